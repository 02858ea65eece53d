// An aedes MQTT broker for the interoperability matrix, started as a child process:
//   node aedes_broker.mjs CONFIG.json
// CONFIG: {"host": "127.123.0.N", "listeners": [{"port": 1883},
//          {"port": 8883, "cert": "...", "key": "...", "ca": "..."},
//          {"port": 8080, "ws": "/mqtt"}, {"port": 8443, "ws": "/ws", "cert": "...", ...}],
//          "users": {"name": "password"} | null, "acl": {"name": ["filter", ...]} | null}
// users null: every client is accepted, with or without credentials; otherwise only those
// users with their password (CONNACK 5 for anything else). acl null: anyone may subscribe and
// publish anywhere; otherwise a user may subscribe only to filters within its own filters
// (SUBACK 0x80 otherwise) and publish only to topics they match. A TLS listener with "ca"
// requires a client certificate issued by it. A listener with "ws" serves MQTT over WebSockets
// (the `ws` package) on that path only (ws://, or wss:// with "cert"): the upgrade agrees on the
// first subprotocol offered, other paths get 400, a request without an upgrade 426, as a
// standalone `ws` server answers. Runs in the foreground until SIGTERM.
import { readFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import tls from 'node:tls'
import { Aedes } from 'aedes'
import { WebSocketServer, createWebSocketStream } from 'ws'

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'))

// Whether `topic` (a topic name or a filter) lies within `filter` (MQTT wildcard matching).
function within (filter, topic) {
  const want = filter.split('/')
  const have = topic.split('/')
  for (let i = 0; i < want.length; i++) {
    if (want[i] === '#') return !(i === 0 && have[0].startsWith('$'))
    if (i >= have.length) return false
    if (want[i] === '+') {
      if (have[i] === '#' || (i === 0 && have[0].startsWith('$'))) return false
      continue
    }
    if (want[i] !== have[i]) return false
  }
  return want.length === have.length
}

function allowed (client, topic) {
  if (config.acl === null) return true
  const name = client && client.iotprobeUser
  return (config.acl[name] || []).some((filter) => within(filter, topic))
}

const broker = await Aedes.createBroker({ heartbeatInterval: 3600000 })

broker.authenticate = (client, username, password, callback) => {
  if (config.users === null) {
    client.iotprobeUser = username
    callback(null, true)
    return
  }
  const ok = typeof username === 'string' && password !== undefined && password !== null &&
    Object.hasOwn(config.users, username) && config.users[username] === password.toString()
  if (ok) client.iotprobeUser = username
  callback(null, ok)
}

broker.authorizeSubscribe = (client, subscription, callback) => {
  callback(null, allowed(client, subscription.topic) ? subscription : null)
}

broker.authorizePublish = (client, packet, callback) => {
  callback(allowed(client, packet.topic) ? null : new Error('not authorized'))
}

function tlsOptions (listener) {
  const options = { cert: readFileSync(listener.cert), key: readFileSync(listener.key) }
  if (listener.ca) {
    Object.assign(options, { ca: readFileSync(listener.ca), requestCert: true,
      rejectUnauthorized: true })
  }
  return options
}

// An HTTP(S) server whose upgrades on `listener.ws` carry MQTT in WebSocket messages.
function webSocketServer (listener) {
  const upgradeRequired = (req, res) => {
    res.writeHead(426, { 'Content-Type': 'text/plain' })
    res.end('Upgrade Required')
  }
  const server = listener.cert
    ? https.createServer(tlsOptions(listener), upgradeRequired)
    : http.createServer(upgradeRequired)
  const sockets = new WebSocketServer({ server, path: listener.ws })
  sockets.on('connection', (socket, req) => broker.handle(createWebSocketStream(socket), req))
  return server
}

const servers = config.listeners.map((listener) => {
  if (listener.ws) return webSocketServer(listener)
  if (!listener.cert) return net.createServer(broker.handle)
  return tls.createServer(tlsOptions(listener), broker.handle)
})
config.listeners.forEach((listener, i) => servers[i].listen(listener.port, config.host))

// Nothing to save (sessions live in memory): SIGTERM ends the process at once.
process.on('SIGTERM', () => process.exit(0))
