// Lifecycle soak (issue 3): 10,000 replace cycles of real Baileys sockets on one session id,
// then 1,000 sockets registered and unregistered, printing the numbers the issue asks for.
// Run: node --expose-gc bench/lifecycle.mjs [--cycles N] [--sockets N]

import { createRequire } from 'node:module'

import { startWaServer } from '../__test__/support/wa-server.mjs'
import { loadBaileys, makeTestSocket } from '../__test__/support/baileys.mjs'

const registry = createRequire(import.meta.url)('../index.js')
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name)
  return i > 0 ? Number(process.argv[i + 1]) : fallback
}
const cycles = arg('--cycles', 10_000)
const socketCount = arg('--sockets', 1_000)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc')

// Waits for the server to see every connection closed and for the TCP handles to be gone.
async function settle (server) {
  for (let i = 0; i < 500 && server.connections > 0; i++) await sleep(10)
  for (let i = 0; i < 200 && (resources().TCPSocketWrap ?? 0) > 0; i++) await sleep(10)
  for (let i = 0; i < 5; i++) {
    await sleep(20)
    globalThis.gc()
  }
}

const resources = () => {
  const counts = {}
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1
  return counts
}

function listenerCount (sock) {
  const probe = () => {}
  const inner = sock.ev.on('bench.probe', probe)
  sock.ev.off('bench.probe', probe)
  return inner.listenerCount('connection.update')
}

const baileys = await loadBaileys(7)
const server = await startWaServer({ baileys })
const connect = (id) => makeTestSocket({ baileys, url: server.url('accept-close', { id }) })

await settle(server)
const resourcesBefore = resources()
let firstListeners
let lastListeners
const started = process.hrtime.bigint()
for (let i = 0; i < cycles; i++) {
  const sock = registry.registerSocket('cycle', connect('cycle'))
  const n = listenerCount(sock)
  if (i === 0) firstListeners = n
  lastListeners = n
  if (i % 200 === 199) await sleep(1)
}
const cycleMs = Number(process.hrtime.bigint() - started) / 1e6
const resourcesDuring = resources()
registry.unregisterSocket('cycle')
await settle(server)
const resourcesAfter = resources()

await settle(server)
const heapBefore = process.memoryUsage().heapUsed
for (let i = 0; i < socketCount; i++) registry.registerSocket(`s${i}`, connect(`s${i}`))
await sleep(200)
globalThis.gc()
const heapRegistered = process.memoryUsage().heapUsed
for (let i = 0; i < socketCount; i++) registry.unregisterSocket(`s${i}`)
await settle(server)
const heapAfter = process.memoryUsage().heapUsed
await server.close()

const mb = (b) => `${(b / 1048576).toFixed(2)} MB`
console.log(`node ${process.version}, Baileys 7.0.0-rc14, ${new Date().toISOString()}`)
console.log(`${cycles} replace cycles in ${cycleMs.toFixed(0)} ms (${(cycleMs * 1000 / cycles).toFixed(1)} us per cycle, socket creation included)`)
console.log(`connection.update listeners on the live socket: cycle 1 = ${firstListeners}, cycle ${cycles} = ${lastListeners}`)
console.log(`active resources before: ${JSON.stringify(resourcesBefore)}`)
console.log(`active resources right after the last cycle: ${JSON.stringify(resourcesDuring)}`)
console.log(`active resources after unregistering and settling: ${JSON.stringify(resourcesAfter)}`)
console.log(`heap (after gc): before ${mb(heapBefore)}, with ${socketCount} sockets registered ${mb(heapRegistered)}, after unregistering them ${mb(heapAfter)} (${mb(heapAfter - heapBefore)} difference)`)
