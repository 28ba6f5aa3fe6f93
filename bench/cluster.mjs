// `npm run bench:cluster` (= node --expose-gc bench/cluster.mjs): what the cluster costs and how
// fast it moves, on a redis-server this script starts on a free loopback port.
//
//   npm run bench:cluster                 the full run (about 30 s on 2 shared cores)
//   npm run bench:cluster -- --quick      a few seconds, small counts: proves it still works
//   --lease MS                            leaseMs of the takeover part (default 2000)
//   --out FILE                            where the JSON goes (default bench/cluster-results.json)
//
// What is measured (this process is one node; others are separate processes, each
// __test__/fixtures/cluster-node.mjs, so each has its own registry and its own Redis client):
// - claim latency: claim() of a free session until it resolves, one at a time, p50/p99; and a
//   claim refused because another node holds the session (ERR_CLUSTER_HELD).
// - propagation: a node changes a session's state (updateSessionState); how long until this
//   node's cluster.onStateChange gets the `state` event with that value, p50/p99. Both
//   processes read process.hrtime (CLOCK_MONOTONIC on Linux: one clock for the machine).
// - mirrored state updates per second: a node holding 1,000 sessions updates each of them many
//   times in a tight loop; the mirror gathers them in batches (latest state per session). Reported:
//   local updates per second, the time until the view has the last value of every session, and
//   the Redis writes that took (the `state` events seen here).
// - updateSessionState with and without a cluster connected, in this process, 1,000 sessions,
//   2 keys alternating (as `npm run bench`): mitata median per call; the ratio with ÷ without,
//   target ≤ 1.2. Without-cluster is measured before connecting and again after close(), and
//   the lower median counts. Every update changes a held session, so the mirror serializes and
//   writes all 1,000 of them each time it gathers (every mirrorFlushMs): the worst case.
//   Measured with the default mirrorFlushMs and again with 20 ms, to show the share of that work.
// - takeover after kill -9: a node holding 20 sessions is killed; this node waits for them
//   (claim with waitMs). Time from the kill until each claim resolves, per round; target
//   ≤ leaseMs + 1 s.
// Numbers, not assertions: every target prints PASS or MISS.

import { createRequire } from 'node:module'
import { writeFileSync } from 'node:fs'
import os from 'node:os'
import { measure, do_not_optimize } from 'mitata'
import { REDIS_INSTALL, redisAvailable, startRedis } from '../__test__/support/redis.mjs'
import { now, startNode } from '../__test__/support/cluster-nodes.mjs'

const require = createRequire(import.meta.url)
const R = require('../index.js')
const argv = process.argv.slice(2)
const QUICK = argv.includes('--quick')
const arg = (name, dflt) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : dflt)
const LEASE_MS = Number(arg('--lease', 2000))
const OUT = arg('--out', new URL('./cluster-results.json', import.meta.url))
const N = {
  claims: QUICK ? 50 : 1000,
  heldClaims: QUICK ? 20 : 300,
  propagation: QUICK ? 30 : 300,
  mirrorSessions: QUICK ? 100 : 1000,
  mirrorRounds: QUICK ? 5 : 50,
  updateSessions: 1000,
  takeoverIds: QUICK ? 5 : 20,
  takeoverRounds: QUICK ? 1 : 3
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const stub = () => ({ ev: { on () {}, off () {} }, end () {} })

if (!redisAvailable) {
  console.error(`redis-server is not installed: ${REDIS_INSTALL}`)
  process.exit(1)
}

function pct (sorted, p) {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]
}
function summary (values) {
  const s = [...values].sort((a, b) => a - b)
  return { n: s.length, p50: pct(s, 0.5), p99: pct(s, 0.99), max: s[s.length - 1], min: s[0] }
}
const ms = (v) => (Number.isFinite(v) ? `${v < 10 ? v.toFixed(2) : v.toFixed(1)} ms` : 'n/a')
const ns = (v) => `${v.toFixed(1)} ns`

const redis = await startRedis()
const waBase = 'ws://127.0.0.1:1/ws/chat' // no node here makes a real socket
const others = []
const results = { date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, cpu: os.cpus()[0]?.model, loadStart: os.loadavg(), quick: QUICK, leaseMs: LEASE_MS }
const targets = []
let cluster = null

async function cleanUp () {
  if (cluster) await cluster.close().catch(() => {})
  await Promise.all(others.map((n) => n.kill()))
  await redis.stop()
}

async function node (nodeId, leaseMs = 15000) {
  const n = await startNode({ nodeId, waBase })
  others.push(n)
  await n.call('connect', { options: { url: redis.url, leaseMs, dataLossGraceMs: 0 } })
  return n
}

/** updateSessionState, median ns per call, on `ids` (registered here). */
async function updateCost (ids) {
  const upd = [{ isConnected: true, error: null }, { isConnected: false, error: null }]
  const hit = Array.from({ length: 4096 }, (_, k) => ids[(k * 7919) % ids.length])
  let i = 0
  const s = await measure(() => do_not_optimize(R.updateSessionState(hit[i++ & 4095], upd[i & 1])), QUICK ? { min_cpu_time: 50e6 } : { min_cpu_time: 500e6 })
  return s.p50
}

try {
  console.log(`cluster benchmark: redis-server ${redis.url}, Node ${process.version}, ${results.cpus} cores, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}${QUICK ? ' (--quick: numbers not judged)' : ''}\n`)

  // 1. updateSessionState without a cluster (before connecting).
  const updIds = Array.from({ length: N.updateSessions }, (_, i) => `upd_${i}`)
  for (const id of updIds) R.registerSocket(id, stub(), { track: false })
  const without1 = await updateCost(updIds)
  R.clearAll()

  // 2. This process joins the cluster; two more nodes as separate processes.
  // dataLossGraceMs 0: this Redis is fresh (it would look like one that lost its data, and
  // claims would wait a lease); the benchmark measures claims, not that recovery.
  cluster = await R.connectCluster({ url: redis.url, nodeId: 'bench-here', leaseMs: 15000, dataLossGraceMs: 0 })
  const [other] = await Promise.all([node('bench-other')])

  // 3. Claim latency.
  const claimMs = []
  for (let i = 0; i < N.claims; i++) {
    const t0 = now()
    await cluster.claim(`claim_${i}`)
    claimMs.push(now() - t0)
  }
  for (let i = 0; i < N.claims; i++) await cluster.release(`claim_${i}`)
  for (let i = 0; i < N.heldClaims; i++) await other.call('claim', { id: `held_${i}`, socket: false })
  const heldMs = []
  for (let i = 0; i < N.heldClaims; i++) {
    const t0 = now()
    const err = await cluster.claim(`held_${i}`).then(() => null, (e) => e)
    heldMs.push(now() - t0)
    if (err?.code !== 'ERR_CLUSTER_HELD') throw new Error(`claim of a held session: ${err?.code ?? 'resolved'}`)
  }
  results.claim = summary(claimMs)
  results.claimHeld = summary(heldMs)

  // 4. updateSessionState with the cluster connected: every session held and mirrored.
  for (const id of updIds) {
    await cluster.claim(id)
    R.registerSocket(id, stub(), { track: false })
  }
  const withCluster = await updateCost(updIds)

  // 5. Propagation of a state change from the other node to this node's events: one session
  // per sample, changed at random moments (a change waits for the mirror's next gathering, so
  // changes made right after each event would all wait a whole interval).
  const propIds = Array.from({ length: N.propagation }, (_, i) => `prop_${i}`)
  for (const id of propIds) await other.call('claim', { id, socket: 'stub' })
  await sleep(300) // their first mirror writes (registration) go out first
  const seen = new Map() // prop id -> time its `seq` event arrived here
  let stateEvents = 0
  let lastStateAt = 0
  const mirrorLast = new Map()
  const off = cluster.onStateChange((e) => {
    if (e.type !== 'state') return
    const t = now()
    stateEvents++
    lastStateAt = t
    const seq = e.state?.seq
    if (typeof seq !== 'number') return
    if (e.sessionId.startsWith('prop_')) seen.set(e.sessionId, t)
    else mirrorLast.set(e.sessionId, seq)
  })
  const sentAt = new Map()
  for (const id of propIds) {
    sentAt.set(id, await other.call('update', { id, patch: { seq: 1 } }))
    await sleep(Math.random() * 20)
  }
  const propDeadline = now() + 5000
  while (seen.size < propIds.length && now() < propDeadline) await sleep(5)
  const propMs = propIds.filter((id) => seen.has(id)).map((id) => seen.get(id) - sentAt.get(id))
  results.propagation = { ...summary(propMs), lost: N.propagation - propMs.length }

  // 6. Mirror throughput: the other node updates N sessions many times.
  const mirrorIds = Array.from({ length: N.mirrorSessions }, (_, i) => `mir_${i}`)
  for (const id of mirrorIds) await other.call('claim', { id, socket: 'stub' })
  await sleep(200)
  stateEvents = 0
  mirrorLast.clear()
  const { t0, t1 } = await other.call('updateMany', { ids: mirrorIds, rounds: N.mirrorRounds }, 120000)
  const deadline = now() + 60000
  while (now() < deadline && !(mirrorLast.size === mirrorIds.length && mirrorIds.every((id) => mirrorLast.get(id) === N.mirrorRounds))) await sleep(5)
  const complete = mirrorIds.every((id) => mirrorLast.get(id) === N.mirrorRounds)
  const updates = N.mirrorSessions * N.mirrorRounds
  const spanMs = lastStateAt - t0
  results.mirror = {
    sessions: N.mirrorSessions,
    updates,
    localUpdatesPerSec: updates / ((t1 - t0) / 1000),
    viewCompleteMs: complete ? spanMs : null,
    updatesPerSecEndToEnd: complete ? updates / (spanMs / 1000) : null,
    redisWrites: stateEvents,
    redisWritesPerSec: stateEvents / (spanMs / 1000),
    complete
  }
  off()
  const sample = await cluster.whereIs(mirrorIds[mirrorIds.length - 1])
  if (sample?.state?.seq !== N.mirrorRounds) throw new Error(`whereIs shows seq ${sample?.state?.seq}, expected ${N.mirrorRounds}`)

  // 7. Takeover after kill -9.
  const takeover = []
  for (let round = 0; round < N.takeoverRounds; round++) {
    const victim = await node(`bench-victim-${round}`, LEASE_MS)
    const ids = Array.from({ length: N.takeoverIds }, (_, i) => `victim_${round}_${i}`)
    for (const id of ids) await victim.call('claim', { id, socket: false })
    await sleep(Math.random() * LEASE_MS / 3) // anywhere in the renewal cycle
    const killedAt = await victim.kill()
    const times = await Promise.all(ids.map(async (id) => {
      await cluster.claim(id, { waitMs: LEASE_MS + 5000 })
      return now() - killedAt
    }))
    takeover.push(...times)
  }
  results.takeover = summary(takeover)

  // 8. With a cluster that gathers changed states every 20 ms instead of the default: how much
  // of the cost is the mirror's scanning and writing, running beside the updates.
  await cluster.close()
  cluster = await R.connectCluster({ url: redis.url, nodeId: 'bench-here-eager', leaseMs: 15000, dataLossGraceMs: 0, mirrorFlushMs: 20 })
  for (const id of updIds) {
    await cluster.claim(id)
    R.registerSocket(id, stub(), { track: false })
  }
  const withEagerMirror = await updateCost(updIds)

  // 9. Without a cluster again (after close), for the lower of the two medians.
  await cluster.close()
  cluster = null
  for (const id of updIds) R.registerSocket(id, stub(), { track: false })
  const without2 = await updateCost(updIds)
  R.clearAll()
  const without = Math.min(without1, without2)
  results.update = { withoutNs: without, withoutRuns: [without1, without2], withNs: withCluster, ratio: withCluster / without, withEagerMirrorNs: withEagerMirror, eagerMirrorRatio: withEagerMirror / without }
  results.loadEnd = os.loadavg()

  // Report.
  const line = (name, v, extra = '') => console.log(`  ${name.padEnd(44)} ${v}${extra}`)
  console.log('latency (ms)                                   p50       p99       max')
  const lat = (name, s) => line(name, `${ms(s.p50).padStart(9)} ${ms(s.p99).padStart(9)} ${ms(s.max).padStart(9)}`, `  (n=${s.n})`)
  lat('claim of a free session', results.claim)
  lat('claim of a held session (ERR_CLUSTER_HELD)', results.claimHeld)
  lat('state change -> another node\'s event', results.propagation)
  lat(`takeover after kill -9 (leaseMs ${LEASE_MS})`, results.takeover)
  const m = results.mirror
  console.log(`\nstate mirror: ${m.sessions} sessions x ${N.mirrorRounds} updates = ${m.updates} updates on one node`)
  line('local updateSessionState rate', `${Math.round(m.localUpdatesPerSec).toLocaleString('en')} /s`)
  line('until the view had every last value', m.complete ? `${ms(m.viewCompleteMs)}: ${Math.round(m.updatesPerSecEndToEnd).toLocaleString('en')} updates/s end to end` : 'INCOMPLETE')
  line('Redis writes (batched, latest per session)', `${m.redisWrites} (${Math.round(m.redisWritesPerSec).toLocaleString('en')} /s)`)
  const u = results.update
  console.log(`\nupdateSessionState, ${N.updateSessions} sessions, median per call`)
  line('without a cluster (lower of before/after)', `${ns(u.withoutNs)}  (${u.withoutRuns.map(ns).join(', ')})`)
  line('with a cluster connected (default mirror)', `${ns(u.withNs)}  (ratio ${u.ratio.toFixed(2)})`)
  line('with a cluster connected (mirrorFlushMs 20)', `${ns(u.withEagerMirrorNs)}  (ratio ${u.eagerMirrorRatio.toFixed(2)})`)
  targets.push({ name: 'updateSessionState with ÷ without a cluster (default mirror)', value: u.ratio.toFixed(2), target: '≤ 1.2', pass: u.ratio <= 1.2 })
  targets.push({ name: `takeover after kill -9, max (leaseMs ${LEASE_MS})`, value: ms(results.takeover.max), target: `≤ ${LEASE_MS + 1000} ms`, pass: results.takeover.max <= LEASE_MS + 1000 })
  console.log('\ntargets')
  for (const tg of targets) line(tg.name, `${String(tg.value).padStart(9)}  target ${tg.target}  ${QUICK ? '(quick: not judged)' : tg.pass ? 'PASS' : 'MISS'}`)
  results.targets = targets
  writeFileSync(OUT, JSON.stringify(results, null, 2) + '\n')
  console.log(`\nload ${results.loadStart.map((l) => l.toFixed(2)).join(' ')} at start, ${results.loadEnd.map((l) => l.toFixed(2)).join(' ')} at end; JSON in ${OUT instanceof URL ? OUT.pathname : OUT}`)
} catch (err) {
  console.error(`cluster benchmark failed: ${err.stack ?? err}`)
  process.exitCode = 1
} finally {
  await cleanUp()
}
