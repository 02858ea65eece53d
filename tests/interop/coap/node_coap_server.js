// node-coap as a CoAP device of the interoperability matrix:
// `node node_coap_server.js ADDRESS PORT read-only|writable`.
//
// node-coap does the protocol (message ids, piggybacked ACKs, deduplication, Block2); node-coap
// has no resource directory, so this script wires one: a discovery document listing two sensor
// values, a 4.05 for PUT unless the device is `writable`, and a 4.04 elsewhere.
'use strict'

const coap = require('coap')

const [address, port, mode] = process.argv.slice(2)
const values = new Map([['/sensors/temperature', '21.5'], ['/config/interval', '60']])
const links = [...values.keys()].map((path) => `<${path}>;ct=0`).join(',')

const server = coap.createServer((request, response) => {
  const path = request.url.split('?')[0]
  if (path === '/.well-known/core' && request.method === 'GET') {
    response.setOption('Content-Format', 'application/link-format')
    response.end(links)
  } else if (!values.has(path)) {
    response.code = '4.04'
    response.end()
  } else if (request.method === 'GET') {
    response.setOption('Content-Format', 'text/plain')
    response.end(values.get(path))
  } else if (request.method === 'PUT' && mode === 'writable') {
    values.set(path, request.payload.toString())
    response.code = '2.04'
    response.end()
  } else {
    response.code = '4.05'
    response.end()
  }
})

server.listen(Number(port), address)
process.on('SIGTERM', () => server.close(() => process.exit(0)))
