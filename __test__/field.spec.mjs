// In the field (issue 9): the registry with a bot written as Baileys' README teaches it, on
// every tested Baileys build, with real sockets against the loopback server.
//
// - Letting go of a socket (replace, unregisterSocket, clearAll, takeover by a worker thread)
//   is silent: the bot's reconnect handler on that socket hears no close, so the bot does not
//   reconnect (a storm of hundreds of connects a second, before the fix).
// - Ending a socket that is still connecting never crashes the process (6.17.16's end()
//   removes the ws 'error' listener; checked in a child process).
// - A bot that removes every listener and ends the socket itself still gets a truthful
//   status, from the per-thread health pass.

import { describe, test, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { Worker } from 'node:worker_threads'
import { fileURLToPath } from 'node:url'

import { registry, sleep, until, untilStatus, wsClosed, resourceCounts } from './support/harness.mjs'
import { startWaServer } from './support/wa-server.mjs'
import { BUILDS, loadBaileys, makeTestSocket, makeCreds } from './support/baileys.mjs'

const {
  registerSocket, getSocket, hasSocket, getSocketCount, unregisterSocket, getSessionState, getStats,
  clearAll, onStateChange
} = registry

// How long a test keeps watching after things settled, to prove that no more connects come.
const SETTLE_MS = 1000
// Baileys keeps the handshake timer of a socket ended while connecting (connectTimeoutMs) and
// the timer of a query in flight (defaultQueryTimeoutMs): short ones keep the leak check short.
const SOCKET_OPTIONS = Object.freeze({ connectTimeoutMs: 1500, defaultQueryTimeoutMs: 1500 })
// The health pass runs every second and acts on a second look: a few seconds at most.
const HEALTH_DEADLINE_MS = 4000

const fixture = (name) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url))

/** The phone number a test socket logs in as: each socket has its own (makeCreds). */
const userOf = (sock) => sock.authState.creds.me.id.split(':')[0]

/** Resolves with the first message from `worker` whose `event` is `event`. */
function message (worker, event, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${event}' message from the worker`)), timeoutMs)
    const onMessage = (m) => {
      if (m?.event === 'failed') reject(new Error(`worker: ${m.message}`))
      if (m?.event !== event) return
      clearTimeout(timer)
      worker.off('message', onMessage)
      resolve(m)
    }
    worker.on('message', onMessage)
  })
}

for (const build of BUILDS) {
  describe(`Baileys ${build.key}`, () => {
    let baileys
    let server
    let baseline
    const bots = []
    const workers = []

    /** The users the server has live connections from for `id`, in connection order. */
    const liveUsers = (id) => server.clients(id).map((c) => c.username)
    const onlyUser = (id, sock) => until(
      () => { const users = liveUsers(id); return users.length === 1 && users[0] === userOf(sock) },
      () => `the server to see only ${userOf(sock)} for ${id} (sees ${JSON.stringify(liveUsers(id))})`
    )

    /**
     * A bot as Baileys' README teaches it: connect() makes a socket, adds the README's
     * reconnect handler, and registers the socket under the session id. With `viaProcess`
     * the same handler runs in an `ev.process` handler, as in Baileys' example.
     */
    function makeBot (id, { mode = 'open', viaProcess = false, creds } = {}) {
      const bot = { id, connects: 0, sockets: [], stopped: false }
      const { DisconnectReason } = baileys
      function connect () {
        // A storm (what this spec guards against) is cut short so that a failing run ends.
        if (bot.stopped || bot.connects >= 50) return null
        bot.connects++
        const sock = makeTestSocket({
          baileys, url: server.url(mode, { id }), creds: creds?.(), ...SOCKET_OPTIONS
        })
        bot.sockets.push(sock)
        if (viaProcess) {
          sock.ev.process(async (events) => {
            if (events['connection.update']) {
              const { connection, lastDisconnect } = events['connection.update']
              if (connection === 'close' && lastDisconnect?.error?.output?.statusCode !== DisconnectReason.loggedOut) connect()
            }
          })
        } else {
          sock.ev.on('connection.update', ({ connection, lastDisconnect }) => {
            if (connection === 'close' && lastDisconnect?.error?.output?.statusCode !== DisconnectReason.loggedOut) connect()
          })
        }
        registerSocket(id, sock)
        return sock
      }
      bot.connect = connect
      bots.push(bot)
      return bot
    }

    before(async () => {
      baileys = await loadBaileys(build.key)
      server = await startWaServer({ baileys })
      baseline = resourceCounts()
    })
    afterEach(async () => {
      for (const bot of bots.splice(0)) bot.stopped = true
      await Promise.all(workers.splice(0).map((w) => w.terminate()))
      clearAll()
      await until(() => server.connections === 0, 'the server to see every connection closed')
    })
    after(async () => {
      // Every socket was let go by the registry: nothing of theirs may stay behind (Baileys'
      // handshake and query timers of sockets ended mid-request run out within ~1.5 s).
      await until(() => {
        const now = resourceCounts()
        return Object.keys({ ...now, ...baseline }).every((k) => (now[k] ?? 0) <= (baseline[k] ?? 0))
      }, () => `active resources back to ${JSON.stringify(baseline)} (now ${JSON.stringify(resourceCounts())})`, 8000)
      await server.close()
      assert.deepEqual(server.errors, [])
    })

    test('restart an open session: 2 connects, the new socket is the live one', async () => {
      const bot = makeBot('restart-open')
      const first = bot.connect()
      await untilStatus('restart-open', 'open')
      const second = bot.connect()
      await untilStatus('restart-open', 'open')
      await sleep(SETTLE_MS)
      assert.equal(bot.connects, 2)
      assert.equal(getSocket('restart-open'), second)
      assert.equal(wsClosed(first), true)
      await onlyUser('restart-open', second)
      const s = getSessionState('restart-open')
      assert.equal(s.status, 'open')
      assert.equal(s.connects, 1)
    })

    test('restart a session that is still connecting: 2 connects, no crash', async () => {
      const bot = makeBot('restart-connecting')
      const first = bot.connect()
      assert.equal(getSessionState('restart-connecting').status, 'connecting')
      assert.equal(first.ws.isConnecting, true, 'the first socket has not even finished its websocket handshake')
      const second = bot.connect()
      await untilStatus('restart-connecting', 'open')
      await sleep(SETTLE_MS)
      assert.equal(bot.connects, 2)
      assert.equal(getSocket('restart-connecting'), second)
      assert.equal(wsClosed(first), true)
      await onlyUser('restart-connecting', second)
    })

    test('restart with an ev.process handler (Baileys\' example): 2 connects', async () => {
      const bot = makeBot('restart-process', { viaProcess: true })
      bot.connect()
      await untilStatus('restart-process', 'open')
      const second = bot.connect()
      await untilStatus('restart-process', 'open')
      await sleep(SETTLE_MS)
      assert.equal(bot.connects, 2)
      assert.equal(getSocket('restart-process'), second)
      await onlyUser('restart-process', second)
    })

    test('unregisterSocket while open: 1 connect, nothing live', async () => {
      const bot = makeBot('unregister')
      const sock = bot.connect()
      await untilStatus('unregister', 'open')
      assert.equal(unregisterSocket('unregister'), true)
      await sleep(SETTLE_MS)
      assert.equal(bot.connects, 1)
      assert.equal(getSocket('unregister'), null)
      assert.equal(getSessionState('unregister'), null)
      assert.equal(wsClosed(sock), true)
      await until(() => liveUsers('unregister').length === 0, 'the server to see no connection for the id')
    })

    test('clearAll: 1 connect per session, nothing live', async () => {
      const ids = ['clear-1', 'clear-2', 'clear-3']
      const sessions = ids.map((id) => makeBot(id))
      const socks = sessions.map((bot) => bot.connect())
      for (const id of ids) await untilStatus(id, 'open')
      clearAll()
      await sleep(SETTLE_MS)
      assert.deepEqual(sessions.map((bot) => bot.connects), [1, 1, 1])
      assert.equal(getSocketCount(), 0)
      assert.ok(socks.every(wsClosed))
      await until(() => ids.every((id) => liveUsers(id).length === 0), 'the server to see no connection for the ids')
    })

    test('takeover from a worker thread: the main thread\'s bot does not reconnect', async () => {
      const bot = makeBot('takeover')
      const first = bot.connect()
      await untilStatus('takeover', 'open')
      const worker = new Worker(fixture('field-worker.mjs'), {
        workerData: { build: build.key, url: server.url('open', { id: 'takeover' }), id: 'takeover', socketOptions: SOCKET_OPTIONS }
      })
      workers.push(worker)
      const opened = await message(worker, 'open')
      await sleep(SETTLE_MS)
      assert.equal(bot.connects, 1)
      assert.equal(hasSocket('takeover'), false)
      assert.equal(getSocket('takeover'), null)
      assert.equal(wsClosed(first), true)
      const s = getSessionState('takeover')
      assert.equal(s.threadId, worker.threadId)
      assert.equal(s.status, 'open')
      await until(
        () => { const users = liveUsers('takeover'); return users.length === 1 && users[0] === opened.username },
        () => `the server to see only the worker's socket (sees ${JSON.stringify(liveUsers('takeover'))})`
      )
      worker.postMessage('stop')
      await message(worker, 'stopped')
    })

    test('health pass: a bot that removes every listener and ends the socket itself gets a closed status', async (t) => {
      const changes = []
      const unsubscribe = onStateChange((c) => { if (c.type === 'status') changes.push(c) })
      try {
        const open = makeTestSocket({ baileys, url: server.url('open', { id: 'gone-open' }), ...SOCKET_OPTIONS })
        const qr = makeTestSocket({
          baileys, url: server.url('qr', { id: 'gone-qr' }), creds: makeCreds(baileys, { registered: false }), ...SOCKET_OPTIONS
        })
        const stays = makeTestSocket({ baileys, url: server.url('open', { id: 'stays' }), ...SOCKET_OPTIONS })
        registerSocket('gone-open', open)
        registerSocket('gone-qr', qr)
        registerSocket('stays', stays)
        await untilStatus('gone-open', 'open')
        await untilStatus('gone-qr', 'qr')
        await untilStatus('stays', 'open')
        // How real bots clean up, without unregisterSocket: the registry's listeners go too.
        const started = Date.now()
        for (const sock of [open, qr]) {
          sock.ev.removeAllListeners()
          await sock.end()
        }
        for (const id of ['gone-open', 'gone-qr']) {
          const s = await untilStatus(id, 'closed', HEALTH_DEADLINE_MS)
          t.diagnostic(`${build.key}: ${id} closed ${Date.now() - started} ms after end()`)
          assert.equal(s.isConnected, false)
          assert.equal(s.hasQr, false)
          assert.equal(s.lastDisconnect.code, null)
          assert.match(s.lastDisconnect.message, /without a connection\.update/)
          assert.equal(s.error, s.lastDisconnect.message)
          assert.equal(s.disconnects, 1)
        }
        // It stays registered, as a socket that closed by itself does.
        assert.equal(getSocket('gone-open'), open)
        await until(() => changes.some((c) => c.sessionId === 'gone-open' && c.previous.status === 'open' && c.current.status === 'closed'), 'a status event open -> closed')
        await until(() => changes.some((c) => c.sessionId === 'gone-qr' && c.previous.status === 'qr' && c.current.status === 'closed'), 'a status event qr -> closed')
        // A live socket is never taken for closed.
        assert.equal(getSessionState('stays').status, 'open')
        assert.equal(stays.ws.isOpen, true)
        assert.equal(changes.filter((c) => c.sessionId === 'stays' && c.current.status !== 'open').length, 0)
      } finally {
        unsubscribe()
      }
    })

    test('ending a still-connecting socket through the registry does not crash the process', () => {
      // The control: Baileys alone. On 6.17.16 its own end() crashes the process.
      const direct = spawnSync(process.execPath, [fixture('field-end-connecting.mjs'), build.key, 'direct'], { encoding: 'utf8', timeout: 30000 })
      assert.match(direct.stdout, /connecting before end: 1/)
      if (build.key === '6.17.16') {
        assert.equal(direct.status, 1, 'the unguarded end() crashes')
        assert.match(direct.stderr, /WebSocket was closed before the connection was established/)
      } else {
        assert.equal(direct.status, 0, direct.stderr)
      }
      for (const how of ['replace', 'unregister', 'clearAll']) {
        const child = spawnSync(process.execPath, [fixture('field-end-connecting.mjs'), build.key, how], { encoding: 'utf8', timeout: 30000 })
        assert.equal(child.stderr, '', `${how}: nothing on stderr`)
        assert.equal(child.status, 0, `${how}: exit code`)
        assert.match(child.stdout, how === 'clearAll' ? /connecting before end: 3/ : /connecting before end: 1/)
        assert.match(child.stdout, /survived; socketFaults 0/)
      }
    })
  })
}

describe('the health pass and sockets a real one cannot stand for', () => {
  // Plain objects: a real Baileys socket always has a ws that was connecting or open by the
  // time it is registered, and never throws from its getters.
  afterEach(() => clearAll())

  /** A fake socket whose `ev` keeps its listeners, so a test can play Baileys' events. */
  function fakeSocket (ws) {
    const listeners = new Map()
    const sock = {
      ev: {
        on (event, fn) { listeners.set(fn, event) },
        off (event, fn) { listeners.delete(fn) }
      },
      end () {},
      emit (event, payload) {
        for (const [fn, e] of listeners) if (e === event) fn(payload)
      }
    }
    Object.defineProperty(sock, 'ws', typeof ws === 'function' ? { get: ws } : { value: ws })
    return sock
  }

  test('a socket whose ws reads closed before it ever connected (a lazy fork) stays connecting', async () => {
    const lazy = fakeSocket({ isClosed: true, isClosing: true, isConnecting: false, on () {} })
    registerSocket('lazy', lazy)
    lazy.emit('connection.update', { connection: 'connecting' })
    await sleep(2500)
    assert.equal(getSessionState('lazy').status, 'connecting')
  })

  test('a ws getter that throws: recorded once as a socket fault, never thrown', async () => {
    const faults = getStats().socketFaults.count
    const hostile = fakeSocket(() => { throw new Error('ws getter broke') })
    registerSocket('hostile', hostile)
    hostile.emit('connection.update', { connection: 'open' })
    assert.equal(getSessionState('hostile').status, 'open')
    await sleep(2500)
    assert.equal(getStats().socketFaults.count, faults + 1, 'one fault, not one per pass')
    assert.match(getStats().socketFaults.last, /ws getter broke/)
    assert.equal(getSessionState('hostile').status, 'open', 'nothing is known about its connection')
    // Letting go of it reads ws once more, to guard its end(): one more fault, no throw.
    assert.equal(unregisterSocket('hostile'), true)
    assert.equal(getStats().socketFaults.count, faults + 2)
  })

  test('no ws at all: let go without a fault', () => {
    const faults = getStats().socketFaults.count
    registerSocket('no-ws', fakeSocket(undefined))
    assert.equal(unregisterSocket('no-ws'), true)
    assert.equal(getStats().socketFaults.count, faults)
  })
})
