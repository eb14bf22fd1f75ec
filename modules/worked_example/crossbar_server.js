// json-server 0.17 dressed as Kazoo's Crossbar API (v2) for the rest_client worked example:
// PUT /v2/user_auth issues a token; /v2/accounts/<id>/devices lists the account's devices,
// page_size per page, start_key/next_start_key as offsets; answers in the {"data": ...} envelope.
const crypto = require('crypto');
const jsonServer = require('json-server');
const server = jsonServer.create();
const router = jsonServer.router(process.argv[2] || 'db.json');
const db = router.db;

server.use(jsonServer.defaults({ logger: true }));
server.use(jsonServer.bodyParser);

server.put('/v2/user_auth', (req, res) => {
  const given = (req.body && req.body.data) || {};
  const user = db.get('users').find({ account_name: given.account_name, credentials: given.credentials }).value();
  if (!user) return res.status(401).json({ status: 'error', error: '401', message: 'invalid credentials' });
  const token = crypto.randomBytes(16).toString('hex');
  db.get('tokens').push({ id: token, account_id: user.account_id }).write();
  res.status(201).json({ auth_token: token, status: 'success',
    data: { account_id: user.account_id, owner_id: user.id, account_name: user.account_name } });
});

server.use((req, res, next) => {
  const devices = req.path.match(/^\/v2\/accounts\/([^/]+)\/devices$/);
  if (!devices) return next();
  const token = db.get('tokens').find({ id: req.get('X-Auth-Token') }).value();
  if (!token || token.account_id !== devices[1])
    return res.status(401).json({ status: 'error', error: '401', message: 'invalid_credentials' });
  res.locals.auth_token = token.id;
  res.locals.page_size = parseInt(req.query.page_size, 10) || 50;
  res.locals.start_key = parseInt(req.query.start_key, 10) || 0;
  req.url = '/devices';
  req.query = { account_id: devices[1], _start: res.locals.start_key, _limit: res.locals.page_size };
  next();
});

router.render = (req, res) => {
  const envelope = { data: res.locals.data, status: 'success', auth_token: res.locals.auth_token };
  const total = parseInt(res.get('X-Total-Count'), 10);
  if (!isNaN(total)) {
    envelope.page_size = res.locals.data.length;
    envelope.start_key = res.locals.start_key;
    if (res.locals.start_key + res.locals.page_size < total)
      envelope.next_start_key = res.locals.start_key + res.locals.page_size;
  }
  res.jsonp(envelope);
};
server.use(router);
server.listen(18392, '127.0.0.1', () => console.log('crossbar-style json-server on 127.0.0.1:18392'));
