// One process-wide session table shared by every worker thread (issue 4), with real
// worker_threads and real Baileys 7 sockets connected to the loopback WhatsApp server that
// the main thread runs (the workers get its URL).

import { test, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'

import { startWaServer } from './support/wa-server.mjs'
import { loadBaileys, makeTestSocket, endSocket } from './support/baileys.mjs'
import { TestWorker, terminateAll, until, sleep, SOCKET_OPTIONS } from './fixtures/threads-client.mjs'

const registry = createRequire(import.meta.url)('../index.js')
const {
  registerSocket, getSocket, getAllSockets, getSocketCount, hasSocket, unregisterSocket,
  updateSessionState, getSessionState, getAllSessions, getStats, clearAll, onStateChange, waitForState
} = registry

let baileys
let server
const unsubscribes = []
// Sockets made in the main thread that the registry may not own (refused ones): ended here.
const strays = new Set()

before(async () => {
  baileys = await loadBaileys(7)
  server = await startWaServer({ baileys })
})

afterEach(async () => {
  for (const u of unsubscribes.splice(0)) u()
  await terminateAll()
  clearAll()
  await Promise.all([...strays].map((s) => endSocket(s)))
  strays.clear()
})

after(async () => {
  clearAll()
  await server.close()
})

/** A real socket in the main thread, with `ended` / `wsClosed` flags set by the socket itself. */
function mainSocket (id, mode = 'open') {
  const sock = makeTestSocket({ baileys, url: server.url(mode, { id }), ...SOCKET_OPTIONS })
  const flags = { ended: 0, wsClosed: false }
  const end = sock.end
  sock.end = function (...args) {
    flags.ended++
    return end.apply(this, args)
  }
  sock.ws.socket.once('close', () => { flags.wsClosed = true })
  return { sock, flags }
}

function listen () {
  const changes = []
  unsubscribes.push(onStateChange((c) => changes.push(c)))
  return changes
}

async function workerWith (id, mode = 'open', waitFor = 'open') {
  const worker = new TestWorker()
  const state = await worker.call('connect', { id, url: server.url(mode, { id }), waitFor })
  return { worker, state }
}

test('a worker\'s sessions are in the process-wide table; its sockets stay in the worker', async () => {
  const worker = new TestWorker()
  await Promise.all(['wk_a', 'wk_b'].map((id) =>
    worker.call('connect', { id, url: server.url('open', { id }), waitFor: 'open' })))
  const { sock: mine } = mainSocket('main_a')
  registerSocket('main_a', mine)
  await waitForState('main_a', 'open', { timeoutMs: 5000 })

  // The main thread sees the worker's sessions, each naming the worker's thread.
  for (const id of ['wk_a', 'wk_b']) {
    const s = getSessionState(id)
    assert.ok(s, `${id} is visible in the main thread`)
    assert.equal(s.threadId, worker.threadId)
    assert.equal(s.status, 'open')
    assert.equal(s.isConnected, true)
    assert.match(s.me.id, /@s\.whatsapp\.net$/, 'me comes from the worker socket\'s creds')
  }
  assert.equal(getSessionState('main_a').threadId, 0)
  const all = getAllSessions()
  assert.deepEqual(Object.keys(all).sort(), ['main_a', 'wk_a', 'wk_b'])
  assert.equal(all.wk_b.threadId, worker.threadId)
  const stats = getStats()
  assert.equal(stats.totalSessions, 3, 'getStats answers for the whole process')
  assert.deepEqual([...stats.connectedSessions].sort(), ['main_a', 'wk_a', 'wk_b'])
  assert.deepEqual(stats.activeSessions.map((r) => r.sessionId).sort(), ['main_a', 'wk_a', 'wk_b'])
  assert.equal(stats.byStatus.open, 3)

  // ...but not its sockets: those answer for the calling thread only.
  assert.equal(getSocket('wk_a'), null)
  assert.equal(hasSocket('wk_a'), false)
  assert.equal(getSocketCount(), 1)
  assert.deepEqual([...getAllSockets().keys()], ['main_a'])
  assert.equal(getSocket('main_a'), mine)

  // The worker's view is the mirror image.
  const view = await worker.call('view', { ids: ['wk_a', 'wk_b', 'main_a'] })
  assert.equal(view.threadId, worker.threadId)
  assert.equal(view.count, 2)
  assert.deepEqual(view.allSocketIds, ['wk_a', 'wk_b'])
  assert.equal(view.allSocketsAreOwn, true)
  assert.deepEqual(view.ids.wk_a, { ...view.ids.wk_a, has: true, socket: 'own' })
  assert.equal(view.ids.main_a.has, false)
  assert.equal(view.ids.main_a.socket, null)
  assert.equal(view.ids.main_a.state.threadId, 0, 'the worker sees the main thread\'s session')
  assert.deepEqual(view.sessionIds.sort(), ['main_a', 'wk_a', 'wk_b'])
  assert.equal(view.totalSessions, 3)

  // State updates reach the table from any thread; sockets are only let go by their owner.
  await worker.call('update', { id: 'main_a', updates: { note: 'from the worker' } })
  assert.equal(getSessionState('main_a').note, 'from the worker')
  updateSessionState('wk_a', { note: 'from main' })
  assert.equal((await worker.call('view', { ids: ['wk_a'] })).ids.wk_a.state.note, 'from main')
  assert.equal(await worker.call('unregister', { id: 'main_a' }), false, 'a worker cannot unregister main\'s socket')
  assert.equal(unregisterSocket('wk_a'), false, 'main cannot unregister the worker\'s socket')
  assert.ok(getSessionState('main_a') && getSessionState('wk_a'), 'both sessions are still there')
  assert.equal(getSocket('main_a'), mine)

  // clearAll() in main clears main's sockets only.
  clearAll()
  assert.equal(getSessionState('main_a'), null)
  assert.deepEqual(Object.keys(getAllSessions()).sort(), ['wk_a', 'wk_b'])
  assert.equal((await worker.call('view')).count, 2)
  assert.equal(worker.reported('ended').length, 0, 'nothing ended the worker\'s sockets')
})

test('registering an id another thread owns throws ERR_SESSION_OWNED_BY_OTHER_THREAD and changes nothing', async () => {
  const { worker, state: before } = await workerWith('owned_w')
  const changes = listen()

  // Main thread -> worker-owned id.
  const { sock, flags } = mainSocket('owned_w')
  strays.add(sock)
  assert.throws(() => registerSocket('owned_w', sock), (err) => {
    assert.ok(err instanceof Error)
    assert.equal(err.code, 'ERR_SESSION_OWNED_BY_OTHER_THREAD')
    assert.match(err.message, /owned_w/)
    assert.match(err.message, new RegExp(`thread ${worker.threadId}\\b`))
    assert.match(err.message, /takeover/)
    return true
  })
  // lastActivity aside: the worker's open socket may still hear traffic of its own meanwhile.
  const withoutActivity = ({ lastActivity, ...rest }) => rest
  assert.deepEqual(withoutActivity(getSessionState('owned_w')), withoutActivity(before), 'the session is unchanged')
  assert.equal(hasSocket('owned_w'), false)
  assert.equal(getSocketCount(), 0)
  assert.equal(flags.ended, 0, 'the refused socket is left to its caller')
  // { takeover: false } is the same as no option.
  assert.throws(() => registerSocket('owned_w', sock, { takeover: false }), { code: 'ERR_SESSION_OWNED_BY_OTHER_THREAD' })

  // Worker -> main-owned id.
  const { sock: mine } = mainSocket('owned_m')
  registerSocket('owned_m', mine)
  const mainBefore = getSessionState('owned_m')
  await assert.rejects(worker.call('connect', { id: 'owned_m', url: server.url('silent', { id: 'owned_m_2' }) }),
    (err) => {
      assert.equal(err.code, 'ERR_SESSION_OWNED_BY_OTHER_THREAD')
      assert.match(err.message, /thread 0\b/)
      return true
    })
  assert.equal(getSocket('owned_m'), mine)
  assert.equal(getSessionState('owned_m').createdAt, mainBefore.createdAt)
  assert.equal(getSessionState('owned_m').threadId, 0)

  // The owner's socket is untouched and still registered there.
  await sleep(50)
  assert.equal(worker.reported('ended', (r) => r.id === 'owned_w').length, 0)
  const view = await worker.call('view', { ids: ['owned_w'] })
  assert.equal(view.ids.owned_w.socket, 'own')
  assert.equal(getSessionState('owned_w').status, 'open')
  assert.equal(changes.filter((c) => c.sessionId === 'owned_w').length, 0, 'a refused register emits nothing')
})

test('takeover from a worker: the worker ends its own socket and forgets it', async () => {
  const { worker, state: before } = await workerWith('tk_w')
  assert.equal(before.threadId, worker.threadId)
  const changes = listen()

  const { sock } = mainSocket('tk_w')
  assert.equal(registerSocket('tk_w', sock, { takeover: true }), sock)
  assert.equal(getSocket('tk_w'), sock)
  assert.equal(getSocketCount(), 1)
  const now = getSessionState('tk_w')
  assert.equal(now.threadId, 0)
  assert.equal(now.status, 'connecting')
  assert.ok(now.createdAt >= before.createdAt)

  // The worker ends the old socket by itself (its end() is called and its websocket closes)
  // without having called into the registry since.
  await worker.waitReport('ended', (r) => r.id === 'tk_w')
  await worker.waitReport('wsClosed', (r) => r.id === 'tk_w')
  const view = await worker.call('view', { ids: ['tk_w'] })
  assert.equal(view.ids.tk_w.has, false)
  assert.equal(view.ids.tk_w.socket, null)
  assert.equal(view.count, 0)
  assert.equal(view.ids.tk_w.state.threadId, 0, 'the worker sees the session as main\'s now')

  // The new socket's session is not disturbed by the old socket's close.
  const open = await waitForState('tk_w', 'open', { timeoutMs: 5000 })
  assert.equal(open.threadId, 0)
  await sleep(50)
  const after = getSessionState('tk_w')
  assert.equal(after.status, 'open')
  assert.equal(after.disconnects, 0, 'the old socket\'s close did not reach the new session')
  assert.equal(after.lastDisconnect, null)

  const registered = await until(() => changes.find((c) => c.sessionId === 'tk_w' && c.type === 'registered'), 'the registered event')
  assert.equal(registered.previous.threadId, worker.threadId)
  assert.equal(registered.previous.status, 'open')
  assert.equal(registered.current.threadId, 0)
  assert.equal(registered.threadId, 0)
  assert.equal(changes.filter((c) => c.sessionId === 'tk_w' && c.type === 'removed').length, 0, 'a takeover is not a removal')
  // The worker can no longer register the id without a takeover of its own.
  await assert.rejects(worker.call('connect', { id: 'tk_w', url: server.url('silent', { id: 'tk_w_again' }) }),
    { code: 'ERR_SESSION_OWNED_BY_OTHER_THREAD' })
})

test('takeover by a worker: the main thread ends its socket and forgets it', async () => {
  const { sock, flags } = mainSocket('tk_m')
  registerSocket('tk_m', sock)
  await waitForState('tk_m', 'open', { timeoutMs: 5000 })
  const worker = new TestWorker()
  const state = await worker.call('connect', { id: 'tk_m', url: server.url('open', { id: 'tk_m' }), takeover: true, waitFor: 'open' })
  assert.equal(state.threadId, worker.threadId)
  // Ended by this (main) thread, as soon as its event loop turns: no registry call needed.
  await until(() => flags.ended > 0 && flags.wsClosed, 'main\'s socket to be ended and closed')
  assert.equal(flags.ended, 1)
  assert.equal(getSocket('tk_m'), null)
  assert.equal(hasSocket('tk_m'), false)
  assert.equal(getSocketCount(), 0)
  const s = getSessionState('tk_m')
  assert.equal(s.threadId, worker.threadId)
  assert.equal(s.status, 'open')
  assert.equal(s.disconnects, 0)
  const view = await worker.call('view', { ids: ['tk_m'] })
  assert.equal(view.ids.tk_m.socket, 'own')
})

test('takeover by a worker is seen by the next lookup, before the event loop turns', async () => {
  const { sock, flags } = mainSocket('tk_sync')
  registerSocket('tk_sync', sock)
  const worker = new TestWorker()
  await worker.call('threadId')
  const signal = new SharedArrayBuffer(4)
  const done = worker.call('connect', { id: 'tk_sync', url: server.url('open', { id: 'tk_sync' }), takeover: true, signal })
  // The main thread blocks until the worker has registered: no wake-up can be delivered here,
  // so only the lookup itself can notice the takeover (the counter shared with the worker).
  assert.equal(Atomics.wait(new Int32Array(signal), 0, 0, 10_000), 'ok')
  assert.equal(flags.ended, 0, 'nothing ended the socket before the lookup')
  assert.equal(getSocket('tk_sync'), null)
  assert.equal(flags.ended, 1, 'the lookup let go of the taken-over socket at once')
  assert.equal(hasSocket('tk_sync'), false)
  assert.equal(getAllSockets().has('tk_sync'), false)
  assert.equal(getSessionState('tk_sync').threadId, worker.threadId)
  await done
  await sleep(20)
  assert.equal(flags.ended, 1, 'let go once')
})

for (const how of ['process.exit', 'terminate', 'natural']) {
  test(`a worker that leaves (${how}) takes its sessions out of the table; main's listeners hear 'removed'`, async () => {
    const changes = listen()
    const worker = new TestWorker()
    // A worker whose socket is still open cannot end by itself (the socket holds its event
    // loop), so the natural exit uses a socket the server accepted then closed (428).
    const mode = how === 'natural' ? 'accept-close' : 'open'
    const waitFor = how === 'natural' ? 'closed' : 'open'
    const ids = [`exit_${how}_1`, `exit_${how}_2`]
    for (const id of ids) await worker.call('connect', { id, url: server.url(mode, { id }), waitFor })
    updateSessionState(ids[0], { keep: 'me' })
    for (const id of ids) assert.equal(getSessionState(id).threadId, worker.threadId)
    // Attached now, so that its rejection is handled when it comes.
    const waited = assert.rejects(waitForState(ids[1], how === 'natural' ? 'open' : 'loggedOut'), { code: 'ERR_SESSION_REMOVED' })

    if (how === 'terminate') await worker.terminate()
    else await worker.call('exit', { how })
    let timer
    const code = await Promise.race([worker.exited, new Promise((resolve) => { timer = setTimeout(resolve, 5000, 'still running') })])
    clearTimeout(timer)
    assert.notEqual(code, 'still running', 'the worker exited')

    for (const id of ids) assert.equal(getSessionState(id), null, `${id} left the table`)
    assert.deepEqual(Object.keys(getAllSessions()).filter((id) => ids.includes(id)), [])
    assert.equal(getStats().activeSessions.filter((r) => ids.includes(r.sessionId)).length, 0)
    await waited
    const removed = await until(() => {
      const r = changes.filter((c) => c.type === 'removed' && ids.includes(c.sessionId))
      return r.length === 2 ? r : null
    }, 'two removed events')
    for (const r of removed) {
      assert.equal(r.threadId, worker.threadId)
      assert.equal(r.previous.threadId, worker.threadId)
      assert.equal(r.previous.status, waitFor)
      assert.equal(r.current, null)
    }
    assert.equal(removed.find((r) => r.sessionId === ids[0]).previous.keep, 'me')
    assert.equal(worker.errors.length, 0, `no worker error: ${worker.errors}`)
  })
}

test('4 workers × 100,000 updateSessionState calls on a shared id and their own ids lose nothing', async () => {
  const WORKERS = 4
  const N = 100_000
  const { sock } = mainSocket('hammer_shared')
  registerSocket('hammer_shared', sock)
  updateSessionState('hammer_shared', { fromMain: 'kept' })
  const workers = []
  for (let w = 0; w < WORKERS; w++) {
    const worker = new TestWorker()
    workers.push(worker)
  }
  // Each worker owns a session with a real socket: the writes run while sockets open and
  // close in several threads.
  await Promise.all(workers.map((worker, w) =>
    worker.call('connect', { id: `hammer_own_${w}`, url: server.url('open', { id: `hammer_own_${w}` }), waitFor: 'open', timeoutMs: 15_000 })))
  await waitForState('hammer_shared', 'open', { timeoutMs: 5000 })
  const createdAt = getSessionState('hammer_shared').createdAt

  const sab = new SharedArrayBuffer(8)
  const flags = new Int32Array(sab)
  const runs = workers.map((worker, w) =>
    worker.call('hammer', { sab, workers: WORKERS, w, n: N, shared: 'hammer_shared', own: `hammer_own_${w}` }))
  await until(() => Atomics.load(flags, 0) === WORKERS, 'every worker at the barrier', 10_000)
  Atomics.store(flags, 1, 1)
  Atomics.notify(flags, 1)
  const results = await Promise.all(runs)

  for (const [w, r] of results.entries()) {
    assert.equal(r.problemCount, 0, `worker ${w} saw: ${r.problems.join('; ')}`)
  }
  const shared = getSessionState('hammer_shared')
  for (let w = 0; w < WORKERS; w++) assert.equal(shared[`w${w}`], N, `shared.w${w}`)
  assert.equal(shared.fromMain, 'kept', 'a key nobody rewrote is still there')
  assert.equal(shared.createdAt, createdAt)
  assert.equal(shared.status, 'open', 'the socket-tracked fields were not clobbered by the merges')
  assert.equal(shared.threadId, 0)
  for (let w = 0; w < WORKERS; w++) {
    const own = getSessionState(`hammer_own_${w}`)
    assert.equal(own.n, N, `hammer_own_${w}.n`)
    assert.equal(own.threadId, workers[w].threadId)
    assert.equal(own.status, 'open')
    assert.deepEqual(Object.keys(own).filter((k) => /^w\d$/.test(k)), [], 'no key leaked into another session')
  }
  assert.equal(getStats().totalSessions, WORKERS + 1)
})

test('workers with subscriptions and waiters come and go while other threads emit and take over: no crash, nothing left', async () => {
  const ROUNDS = 25
  const PER_ROUND = 3
  const COUNT = 20
  const churnUrl = new URL('./fixtures/threads-churn-worker.mjs', import.meta.url)
  let removedFromWorkers = 0
  unsubscribes.push(onStateChange((c) => {
    if (c.type === 'removed' && c.sessionId.startsWith('churn_w')) removedFromWorkers++
  }))
  // Meanwhile the main thread keeps registering and removing sessions, so that events are
  // emitted into the workers' subscriptions while they are torn down. Plain objects here for
  // the same reason as in the churn worker (see threads-churn-worker.mjs): hundreds of
  // registrations per second; a real socket cannot be made and ended at that rate.
  let stop = false
  const mainIds = Array.from({ length: 30 }, (_, i) => `churn_main_${i}`)
  const busy = (async () => {
    while (!stop) {
      for (const id of mainIds) registerSocket(id, { end () {} }, { track: false })
      for (const id of mainIds) unregisterSocket(id)
      await new Promise((resolve) => setImmediate(resolve))
    }
  })()
  const errors = []
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const workers = Array.from({ length: PER_ROUND }, (_, j) => {
        const w = new Worker(churnUrl, { workerData: { prefix: `churn_w${round}_${j}`, count: COUNT, flip: j === 1 } })
        w.on('error', (err) => errors.push(err))
        const exited = new Promise((resolve) => w.once('exit', resolve))
        const ready = new Promise((resolve) => w.once('message', resolve))
        return { w, exited, ready }
      })
      await Promise.all(workers.map((x) => x.ready))
      // Take one session of each over while the worker is busy, just before it goes away.
      for (let j = 0; j < PER_ROUND; j++) registerSocket(`churn_w${round}_${j}_2`, { end () {} }, { takeover: true, track: false })
      await sleep(Math.floor(Math.random() * 15))
      await Promise.all(workers.map(({ w, exited }, j) => {
        if (j === 1) {
          w.postMessage('exit')
          return exited
        }
        return w.terminate()
      }))
    }
  } finally {
    stop = true
    await busy
  }
  assert.deepEqual(errors, [])
  const expected = ROUNDS * PER_ROUND * (COUNT - 1)
  await until(() => removedFromWorkers === expected, () => `${expected} removed events (got ${removedFromWorkers})`, 10_000)
  const left = Object.entries(getAllSessions()).filter(([id]) => id.startsWith('churn_'))
  assert.equal(left.length, ROUNDS * PER_ROUND, 'only the sessions main took over are left')
  for (const [id, s] of left) {
    assert.match(id, /^churn_w\d+_\d_2$/)
    assert.equal(s.threadId, 0)
  }
  assert.equal(getSocketCount(), ROUNDS * PER_ROUND)
  await sleep(20)
  assert.equal(removedFromWorkers, expected, 'no duplicate removals')
})
