// npm run demo:cluster: three bot processes on one machine share 300 WhatsApp sessions through
// Redis; one of them is killed (kill -9) and its sessions move to the other two.
//
// Starts a redis-server of its own on a free loopback port and the loopback WhatsApp server the
// tests use (in this process), then three node processes (__test__/fixtures/cluster-node.mjs:
// each its own registry, cluster connection and real Baileys sockets). Each node claims 100
// sessions and registers a socket for each. The fleet view (cluster.getStats() on a surviving
// node) is shown live. Then node-c is killed: its leases expire after leaseMs, node-a and
// node-b claim its sessions (claim with waitMs, as a bot that picks up orphans does) and make
// new sockets. Finally every node closes its cluster connection, and everything is stopped.
// Exits by itself; gives up after DEMO_LIMIT_MS (default 120 s) with exit code 1.
//
// Needs redis-server (apt-get install -y redis-server), the built addon and the devDependencies.
// DEMO_SESSIONS=N changes the number of sessions (default 300), DEMO_LEASE_MS the lease (3000).

import { loadBaileys } from '../__test__/support/baileys.mjs'
import { startWaServer } from '../__test__/support/wa-server.mjs'
import { REDIS_INSTALL, redisAvailable, startRedis } from '../__test__/support/redis.mjs'
import { now, startNode, watchWaServer } from '../__test__/support/cluster-nodes.mjs'

const TOTAL = Number(process.env.DEMO_SESSIONS ?? 300)
const LEASE_MS = Number(process.env.DEMO_LEASE_MS ?? 3000)
const LIMIT_MS = Number(process.env.DEMO_LIMIT_MS ?? 120000)
const NAMES = ['node-a', 'node-b', 'node-c']
const tty = Boolean(process.stdout.isTTY)
const started = now()
const elapsed = () => `${((now() - started) / 1000).toFixed(2).padStart(6)} s`
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const pad = (v, n = 3) => String(v).padStart(n)

if (!redisAvailable) {
  console.error(`redis-server is not installed: ${REDIS_INSTALL}`)
  process.exit(1)
}

let redis = null
let server = null
let wa = null
const nodes = {}

async function cleanUp () {
  await Promise.all(Object.values(nodes).map((n) => n.stop(3000).catch(() => n.kill())))
  wa?.stop()
  await server?.close()
  await redis?.stop()
}

const limit = setTimeout(async () => {
  console.error(`\n[${elapsed()}] the demo did not finish within ${LIMIT_MS} ms; stopping`)
  await cleanUp()
  process.exit(1)
}, LIMIT_MS)
limit.unref()

/** The fleet as a surviving node sees it: one line per node. */
async function fleetLine (viewer) {
  const s = await viewer.call('clusterStats')
  const parts = NAMES.map((name) => {
    const n = s.nodes.find((x) => x.nodeId === name)
    return n ? `${name} ${pad(n.sessions)} sessions ${pad(n.connected)} connected` : `${name}   (not in the view)           `
  })
  return { text: `${parts.join(' | ')} | total ${pad(s.sessions.length)}, WA connections ${pad(server.connections)}`, stats: s }
}

/** Shows the fleet line until `done` resolves: redrawn on a terminal, else a line per change. */
async function showFleet (label, viewer, done) {
  let finished = false
  const finish = () => { finished = true }
  done.then(finish, finish)
  let last = ''
  for (;;) {
    const stop = finished
    const { text } = await fleetLine(viewer).catch((err) => ({ text: `(view unavailable: ${err.code ?? err.message})` }))
    const line = `[${elapsed()}] ${label}: ${text}`
    if (tty) process.stdout.write(`\r\x1b[K${line}${stop ? '\n' : ''}`)
    else if (line.slice(11) !== last.slice(11) || stop) console.log(line)
    last = line
    if (stop) break
    await sleep(tty ? 100 : 400)
  }
  return done
}

try {
  redis = await startRedis()
  const baileys = await loadBaileys('7.0.0-rc14')
  server = await startWaServer({ baileys })
  wa = watchWaServer(server)
  const waBase = server.url().split('?')[0]
  console.log(`redis-server on ${redis.url}; loopback WhatsApp server on 127.0.0.1:${server.port}`)
  console.log(`starting ${NAMES.length} node processes (leaseMs ${LEASE_MS}), ${TOTAL} sessions between them\n`)

  await Promise.all(NAMES.map(async (nodeId) => {
    nodes[nodeId] = await startNode({ nodeId, waBase })
    await nodes[nodeId].call('connect', { options: { url: redis.url, leaseMs: LEASE_MS } })
  }))
  for (const name of NAMES) console.log(`  ${name}: pid ${nodes[name].pid}, connected to the cluster`)

  // 1. Each node claims its share and registers a socket for each session it won. A Redis that
  // never saw the cluster cannot be told from one that lost its data: for one lease nobody may
  // claim a session it does not know (its old owner could still re-assert it), so the first
  // claim of each node waits (waitMs).
  const ids = Array.from({ length: TOTAL }, (_, i) => `user_${String(i + 1).padStart(3, '0')}`)
  const share = (name) => ids.filter((_, i) => NAMES[i % NAMES.length] === name)
  console.log(`(a fresh Redis: claims wait out one lease, ${LEASE_MS} ms, in case an old owner re-asserts)`)
  const claimAll = Promise.all(NAMES.map(async (name) => {
    const mine = share(name)
    for (let i = 0; i < mine.length; i += 10) {
      await Promise.all(mine.slice(i, i + 10).map((id) => nodes[name].call('claim', { id, options: { waitMs: LEASE_MS + 2000 } })))
    }
  }))
  await showFleet('claiming', nodes['node-a'], claimAll)
  const allOpen = (async () => {
    for (;;) {
      const s = await nodes['node-a'].call('clusterStats')
      if (s.nodes.reduce((sum, n) => sum + n.connected, 0) === TOTAL) return
      await sleep(100)
    }
  })()
  await showFleet('connecting', nodes['node-a'], allOpen)

  const sample = ids[2] // one of node-c's
  const before = await nodes['node-a'].call('whereIs', { id: sample })
  console.log(`\nwhereIs('${sample}') from node-a: on ${before.nodeId}, token ${before.token}, lease ttl ${before.leaseTtlMs} ms, status ${before.state?.status}, isConnected ${before.state?.isConnected}`)

  // 2. Another node asking for one of c's sessions is told who holds it.
  try {
    await nodes['node-b'].call('claim', { id: sample, socket: false })
  } catch (err) {
    console.log(`node-b claim('${sample}') -> ${err.code}: owner ${err.owner}`)
  }

  // 3. kill -9 node-c: no release; its leases expire after leaseMs and the others pick them up.
  const orphans = share('node-c')
  console.log(`\n[${elapsed()}] kill -9 node-c (pid ${nodes['node-c'].pid}), which runs ${orphans.length} sessions`)
  const killedAt = await nodes['node-c'].kill()
  delete nodes['node-c']
  const takeovers = Promise.all(['node-a', 'node-b'].map(async (name, k) => {
    const mine = orphans.filter((_, i) => i % 2 === k)
    const times = await Promise.all(mine.map(async (id) => {
      const r = await nodes[name].call('claim', { id, options: { waitMs: LEASE_MS + 5000 } })
      return r.t - killedAt
    }))
    return times
  }))
  const times = (await showFleet('moving', nodes['node-a'], takeovers)).flat().sort((a, b) => a - b)
  console.log(`  all ${times.length} sessions of node-c claimed again ${times[0].toFixed(0)} to ${times[times.length - 1].toFixed(0)} ms after the kill (leaseMs ${LEASE_MS})`)
  const reconnected = (async () => {
    for (;;) {
      const s = await nodes['node-a'].call('clusterStats')
      if (s.nodes.length === 2 && s.nodes.reduce((sum, n) => sum + n.connected, 0) === TOTAL) return
      await sleep(100)
    }
  })()
  await showFleet('reconnecting', nodes['node-a'], reconnected)
  const after = await nodes['node-b'].call('whereIs', { id: sample })
  console.log(`\nwhereIs('${sample}') from node-b: on ${after.nodeId}, token ${after.token} (was ${before.token}), status ${after.state?.status}`)
  const twice = ids.filter((id) => wa.max[id] > 1)
  console.log(`sessions that ever had two live WhatsApp connections at once: ${twice.length ? twice.join(', ') : 'none'}`)

  // 4. A clean shutdown: close() releases every lease; the view empties.
  console.log(`\n[${elapsed()}] closing node-a and node-b (close() ends their sockets and releases the leases)`)
  await nodes['node-b'].call('close')
  const last = await nodes['node-a'].call('clusterStats')
  console.log(`  node-a's view after node-b closed: ${last.nodes.map((n) => `${n.nodeId} ${n.sessions} sessions`).join(', ')}`)
  await cleanUp()
  clearTimeout(limit)
  await sleep(20)
  const left = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap' && r !== 'PipeWrap')
  console.log(`[${elapsed()}] done: redis-server, the WhatsApp server and the node processes stopped; left running here: ${left.length ? left.join(', ') : 'nothing'}`)
  if (twice.length) process.exitCode = 1
} catch (err) {
  console.error(`\n[${elapsed()}] demo failed: ${err.stack ?? err}`)
  await cleanUp()
  process.exitCode = 1
}
