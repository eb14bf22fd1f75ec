-- A HEP3 dissector for tshark builds that have none (Wireshark 4.0, Debian 12), for reading
-- what OpenSIPS's proto_hep sends:  tshark -X lua_script:c_tests/hep3.lua -r capture.pcap
-- Decodes the generic chunks (vendor 0) of the HEP3 spec and proto_hep's extra correlation
-- (type 101, JSON); any UDP datagram on port 9060 starting with "HEP3".

local hep3 = Proto("hep3", "HEP3 (Homer Encapsulation Protocol v3)")

local f = {
    proto_type = ProtoField.uint8("hep3.proto_type", "Payload type", base.HEX,
        { [0x01] = "SIP", [0x57] = "MI", [0x58] = "REST", [0x64] = "xlog" }),
    src = ProtoField.string("hep3.src", "Source"),
    dst = ProtoField.string("hep3.dst", "Destination"),
    ip_proto = ProtoField.uint8("hep3.ip_proto", "IP protocol"),
    capture_id = ProtoField.uint32("hep3.capture_id", "Capture agent id"),
    correlation_id = ProtoField.string("hep3.correlation_id", "Correlation id"),
    extra_correlation = ProtoField.string("hep3.extra_correlation", "Extra correlation"),
    payload = ProtoField.string("hep3.payload", "Payload"),
}
hep3.fields = f

local function address(buf, family_is_v6)
    if family_is_v6 then
        return tostring(buf:ipv6())
    end
    return tostring(buf:ipv4())
end

function hep3.dissector(buf, pinfo, tree)
    if buf:len() < 6 or buf(0, 4):string() ~= "HEP3" then
        return 0
    end
    pinfo.cols.protocol = "HEP3"
    local t = tree:add(hep3, buf(), "HEP3")
    local offset, total = 6, buf(4, 2):uint()
    local ip = {}
    local type_name = "?"
    while offset + 6 <= math.min(total, buf:len()) do
        local vendor, kind, len = buf(offset, 2):uint(), buf(offset + 2, 2):uint(), buf(offset + 4, 2):uint()
        if len < 6 then break end
        local data = buf(offset + 6, len - 6)
        if vendor == 0 then
            if kind == 2 then t:add(f.ip_proto, data)
            elseif kind == 3 or kind == 5 then ip.src = address(data, kind == 5)
            elseif kind == 4 or kind == 6 then ip.dst = address(data, kind == 6)
            elseif kind == 7 then ip.sport = data:uint()
            elseif kind == 8 then ip.dport = data:uint()
            elseif kind == 11 then
                t:add(f.proto_type, data)
                type_name = ({ [0x01] = "SIP", [0x58] = "REST" })[data:uint()] or "type " .. data:uint()
            elseif kind == 12 then t:add(f.capture_id, data)
            elseif kind == 15 then t:add(f.payload, data)
            elseif kind == 17 then t:add(f.correlation_id, data)
            elseif kind == 101 then t:add(f.extra_correlation, data)
            end
        end
        offset = offset + len
    end
    local src = string.format("%s:%s", ip.src or "?", ip.sport or "?")
    local dst = string.format("%s:%s", ip.dst or "?", ip.dport or "?")
    t:add(f.src, src)
    t:add(f.dst, dst)
    pinfo.cols.info = string.format("HEP3 %s %s -> %s", type_name, src, dst)
    return buf:len()
end

DissectorTable.get("udp.port"):add(9060, hep3)
