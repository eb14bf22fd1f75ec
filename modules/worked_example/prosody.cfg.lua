-- Prosody 0.12 for the rest_client worked example: loopback only, no s2s, no TLS, its own
-- directory (base: put mod_rest of prosody-modules in base.."/prosody-modules/mod_rest").
local base = "/scratch/example"
pidfile = base.."/prosody/data/prosody.pid"
data_path = base.."/prosody/data"
plugin_paths = { base.."/prosody-modules" }
log = { debug = base.."/prosody/data/prosody.log"; info = "*console" }
modules_enabled = { "roster"; "saslauth"; "disco"; "offline"; "ping"; "http"; "rest" }
modules_disabled = { "s2s" }
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { 15222 }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = { }
http_ports = { 15280 }
http_interfaces = { "127.0.0.1" }
https_ports = { }
authentication = "internal_hashed"
storage = "internal"
allow_registration = false
c2s_require_encryption = false
-- Requests to 127.0.0.1 carry "Host: 127.0.0.1": serve them as xmpp.local (else 404).
http_default_host = "xmpp.local"
VirtualHost "xmpp.local"
