// Session lifecycle (issue 3): states tracked from real Baileys events, safe replacement,
// no leaks, on every tested Baileys build (7.0.0-rc14, 6.7.24, 6.17.16).

import { describe, test, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

import { registry, sleep, until, untilStatus, wsClosed, resourceCounts } from './support/harness.mjs'
import { startWaServer } from './support/wa-server.mjs'
import { BUILDS, loadBaileys, makeTestSocket, makeCreds, waitForConnection, recordUpdates } from './support/baileys.mjs'

const { registerSocket, getSocket, unregisterSocket, getSessionState, getAllSessions, getStats, clearAll, configure } = registry

/** The emitter behind `sock.ev` (Baileys' `ev.on` returns it), to count listeners. */
function innerEmitter (sock) {
  const probe = () => {}
  const inner = sock.ev.on('registry.test.probe', probe)
  sock.ev.off('registry.test.probe', probe)
  return inner
}

const registryListeners = (sock, event) =>
  innerEmitter(sock).listeners(event).filter((f) => f.name.startsWith('registry'))

for (const build of BUILDS) {
  describe(`Baileys ${build.key}`, () => {
    let baileys
    let server
    const connect = (id, mode, options = {}) => {
      const { creds, ...config } = options
      return makeTestSocket({ baileys, url: server.url(mode, { id }), creds, ...config })
    }

    before(async () => {
      baileys = await loadBaileys(build.key)
      // The server speaks the binary-node codec of the build under test (6.17.16's token
      // dictionaries differ from the others').
      server = await startWaServer({ baileys })
    })
    afterEach(() => clearAll())
    after(async () => {
      clearAll()
      await server.close()
    })

    test('open: status, counters, and the live identity from authState.creds.me', async () => {
      const sock = connect('o1', 'open')
      registerSocket('o1', sock)
      assert.equal(getSessionState('o1').status, 'connecting')
      const s = await untilStatus('o1', 'open')
      assert.equal(s.isConnected, true)
      assert.equal(s.connects, 1)
      assert.equal(s.disconnects, 0)
      assert.ok(s.connectedAt >= s.createdAt)
      assert.equal(s.error, null)
      assert.equal(s.tracked, true)
      await until(() => getSessionState('o1').me?.lid, 'the lid to arrive')
      const me = getSessionState('o1').me
      assert.equal(me.id, sock.authState.creds.me.id)
      assert.equal(me.lid, server.clients('o1')[0].lid)
      assert.equal(getStats().byStatus.open, 1)
    })

    test('qr: hasQr is set and the QR text is never exposed', async () => {
      const sock = connect('q1', 'qr', { creds: makeCreds(baileys, { registered: false }) })
      const qrSeen = waitForConnection(sock, 'qr')
      registerSocket('q1', sock)
      const { qr } = await qrSeen
      const s = await untilStatus('q1', 'qr')
      assert.equal(s.hasQr, true)
      assert.equal(s.isConnected, false)
      const exposed = JSON.stringify([getSessionState('q1'), getAllSessions(), getStats()])
      assert.ok(qr.length > 10)
      assert.equal(exposed.includes(qr), false, 'the QR text is a login secret')
      for (const part of qr.split(/[,#]/).filter((p) => p.length > 8)) assert.equal(exposed.includes(part), false)
    })

    const closes = [
      { name: '401 logged out', mode: 'fail401', status: 'loggedOut', code: 401, reason: 'loggedOut' },
      { name: '515 restart required', mode: 'restart515', status: 'restartRequired', code: 515, reason: 'restartRequired' },
      { name: '428 accepted then closed', mode: 'accept-close', status: 'closed', code: 428, reason: 'connectionClosed' },
      { name: 'a reply that cannot be decoded (plain Error)', mode: 'junk', status: 'closed', code: null, reason: null },
      { name: '408 timed out', mode: 'silent', status: 'closed', code: 408, reason: 'timedOut', config: { connectTimeoutMs: 300 } }
    ]
    for (const c of closes) {
      test(`close, ${c.name}: status ${c.status}, lastDisconnect, and the session stays registered`, async () => {
        const sock = connect('c1', c.mode, c.config)
        const closed = waitForConnection(sock, 'close', 5000)
        registerSocket('c1', sock)
        const update = await closed
        const s = await untilStatus('c1', c.status)
        assert.equal(s.isConnected, false)
        assert.equal(s.lastDisconnect.code, c.code)
        assert.equal(s.lastDisconnect.reason, c.reason)
        assert.equal(s.lastDisconnect.message, update.lastDisconnect.error.message)
        assert.equal(s.error, update.lastDisconnect.error.message)
        assert.ok(s.lastDisconnect.at >= s.createdAt)
        assert.equal(s.disconnects, 1)
        assert.ok(s.disconnectedAt >= s.createdAt)
        assert.equal(getSocket('c1'), sock, 'a socket closing by itself stays registered')
      })
    }

    test('440 replaced and a dropped connection after open', async () => {
      const a = connect('r440', 'open')
      const b = connect('drop', 'open')
      registerSocket('r440', a)
      registerSocket('drop', b)
      await untilStatus('r440', 'open')
      await untilStatus('drop', 'open')
      server.replace('r440')
      server.drop('drop')
      const replaced = await untilStatus('r440', 'replaced')
      assert.deepEqual([replaced.lastDisconnect.code, replaced.lastDisconnect.reason], [440, 'connectionReplaced'])
      const dropped = await untilStatus('drop', 'closed')
      assert.equal(dropped.lastDisconnect.code, 428)
      assert.equal(dropped.connects, 1)
      assert.equal(dropped.disconnects, 1)
      assert.equal(getStats().byStatus.replaced, 1)
    })

    test('messages.upsert: notify from others is inbound, fromMe is outbound', async () => {
      const sock = connect('m1', 'open')
      registerSocket('m1', sock)
      const opened = await untilStatus('m1', 'open')
      await sleep(3)
      // The loopback server cannot send end-to-end encrypted messages, so the event is
      // emitted on the real socket's own emitter, as Baileys' event buffer delivers it to
      // `ev.on` listeners: through the inner emitter's 'event'. Not through `ev.emit`, whose
      // buffering differs by build (6.17.16 holds messages.upsert for seconds after open and
      // then merges an 'append' into a 'notify').
      const msg = (fromMe, id) => ({ key: { remoteJid: '1@s.whatsapp.net', fromMe, id }, message: { conversation: 'hi' } })
      const deliver = (payload) => innerEmitter(sock).emit('event', { 'messages.upsert': payload })
      deliver({ type: 'notify', messages: [msg(false, 'a'), msg(false, 'b')] })
      await until(() => getSessionState('m1').messagesIn === 2, 'two inbound messages')
      const s1 = getSessionState('m1')
      assert.ok(s1.lastInboundAt >= opened.lastActivity)
      assert.equal(s1.lastOutboundAt, null)
      assert.ok(s1.lastActivity >= s1.lastInboundAt, 'lastActivity moved with the message')
      deliver({ type: 'append', messages: [msg(true, 'c'), msg(false, 'old')] })
      await until(() => getSessionState('m1').messagesOut === 1, 'one outbound message')
      const s2 = getSessionState('m1')
      assert.equal(s2.messagesIn, 2, 'an appended message from someone else is backlog, not live inbound')
      assert.ok(s2.lastOutboundAt >= s1.lastInboundAt)
    })

    for (const phase of ['connecting', 'open']) {
      test(`replace during ${phase}: the old socket is ended and its events no longer reach the session`, async () => {
        const old = connect('rp', 'open')
        registerSocket('rp', old)
        if (phase === 'open') await untilStatus('rp', 'open')
        assert.equal(registryListeners(old, 'connection.update').length, 1)
        const heard = recordUpdates(old)
        const next = connect('rp', 'open')
        registerSocket('rp', next)
        await until(() => wsClosed(old), "the old socket's websocket to close")
        assert.deepEqual(heard.updates, [], "the bot's own listener on the old socket hears nothing more")
        assert.equal(registryListeners(old, 'connection.update').length, 0)
        assert.equal(registryListeners(old, 'messages.upsert').length, 0)
        await untilStatus('rp', 'open')
        // Whatever the old socket still emits is not the session's business any more.
        const boom = Object.assign(new Error('late'), { output: { statusCode: 401 } })
        old.ev.emit('connection.update', { connection: 'close', lastDisconnect: { error: boom, date: new Date() } })
        old.ev.emit('messages.upsert', { type: 'notify', messages: [{ key: { fromMe: false } }] })
        await sleep(20)
        const s = getSessionState('rp')
        assert.equal(s.status, 'open')
        assert.equal(s.messagesIn, 0)
        assert.equal(getSocket('rp'), next)
        assert.equal(registryListeners(next, 'connection.update').length, 1)
      })
    }

    test('registering the same socket twice under its id keeps it alive and tracked once', async () => {
      const sock = connect('twice', 'open')
      registerSocket('twice', sock)
      await untilStatus('twice', 'open')
      const before = getSessionState('twice')
      assert.equal(registerSocket('twice', sock), sock)
      await sleep(20)
      assert.equal(wsClosed(sock), false, 'the live socket was not ended')
      assert.equal(registryListeners(sock, 'connection.update').length, 1)
      const after = getSessionState('twice')
      assert.equal(after.status, 'open')
      assert.equal(after.createdAt, before.createdAt, 'the session was not reset')
    })

    test('a socket that closed by itself is unregistered without faults', async () => {
      const faults = getStats().socketFaults.count
      const sock = connect('self', 'fail401')
      registerSocket('self', sock)
      await untilStatus('self', 'loggedOut')
      // 6.x end() already removed every connection.update listener, 7.x destroyed the
      // emitter: removing the registry's listeners again must be harmless.
      assert.equal(unregisterSocket('self'), true)
      assert.equal(getStats().socketFaults.count, faults)
      assert.equal(getSessionState('self'), null)
    })

    test('{ track: false } adds no listener and keeps status null', async () => {
      const sock = connect('nt', 'open')
      const before = innerEmitter(sock).listenerCount('connection.update')
      registerSocket('nt', sock, { track: false })
      assert.equal(innerEmitter(sock).listenerCount('connection.update'), before)
      await waitForConnection(sock, 'open')
      const s = getSessionState('nt')
      assert.equal(s.status, null)
      assert.equal(s.tracked, false)
      assert.equal(s.isConnected, false, 'an untracked session is only what the bot says')
    })

    test('1,000 replace cycles on one id: listener count and active resources stay constant', async () => {
      // accept-close: every socket really connects, so each cycle ends a live connection.
      const baseline = resourceCounts()
      let first
      let last
      for (let i = 0; i < 1000; i++) {
        const sock = connect('cycle', 'accept-close')
        registerSocket('cycle', sock)
        const count = innerEmitter(sock).listenerCount('connection.update')
        if (i === 0) first = count
        last = count
        if (i % 100 === 99) await sleep(1)
      }
      assert.equal(last, first, 'the live socket has as many listeners at cycle 1,000 as at cycle 1')
      assert.equal(registryListeners(getSocket('cycle'), 'connection.update').length, 1)
      unregisterSocket('cycle')
      await until(() => server.connections === 0, 'the server to see every connection closed', 10000)
      await until(() => {
        const now = resourceCounts()
        return Object.keys({ ...now, ...baseline }).every((k) => (now[k] ?? 0) <= (baseline[k] ?? 0))
      }, `active resources back to ${JSON.stringify(baseline)} (now ${JSON.stringify(resourceCounts())})`, 10000)
    })

    test('100 sockets removed from the registry are garbage-collected, with their emitters', async () => {
      assert.equal(typeof globalThis.gc, 'function', 'run with --expose-gc')
      let collected = 0
      const finalizers = new FinalizationRegistry(() => { collected++ })
      ;(() => {
        for (let i = 0; i < 100; i++) {
          const id = `gc_${i}`
          const sock = connect(id, 'accept-close')
          finalizers.register(sock, id)
          // Its event emitter too: what a let-go socket's ev.emit is replaced with must not
          // hold the emitter (and everything Baileys' listeners on it hold) from a GC root.
          finalizers.register(sock.ev, `${id}.ev`)
          registerSocket(id, sock)
        }
      })()
      await until(() => getStats().byStatus.closed === 100, 'every socket to close', 10000)
      for (let i = 0; i < 50; i++) unregisterSocket(`gc_${i}`)
      // The other half leaves by replacement with a socket that is then unregistered too.
      for (let i = 50; i < 100; i++) registerSocket(`gc_${i}`, { ev: { on () {}, off () {} }, end () {} })
      clearAll()
      await until(() => server.connections === 0, 'connections to close', 10000)
      for (let round = 0; round < 50 && collected < 200; round++) {
        await sleep(20)
        globalThis.gc()
      }
      assert.equal(collected, 200, `${collected} of 100 sockets and their 100 emitters were collected`)
    })
  })
}

describe('sockets that misbehave', () => {
  // A real Baileys socket does not throw from ev.on/ev.off/end nor lack `ev`: these cases
  // need plain objects standing in for a broken socket.
  afterEach(() => clearAll())

  test('ev.on throws: registered untracked, the fault recorded, cleaned up without throwing', () => {
    const faults = getStats().socketFaults.count
    let ended = 0
    const sock = { ev: { on () { throw new Error('on broke') }, off () {} }, end () { ended++ } }
    assert.equal(registerSocket('bad-on', sock), sock)
    const s = getSessionState('bad-on')
    assert.equal(s.tracked, false)
    assert.equal(s.status, null)
    assert.match(s.error, /on broke/)
    assert.equal(getStats().socketFaults.count, faults + 1)
    assert.equal(unregisterSocket('bad-on'), true)
    assert.equal(ended, 1)
  })

  test('ev.on throws on the second event: the first listener is removed again', () => {
    const added = new Set()
    const sock = {
      ev: {
        on (event, fn) { if (added.size === 1) throw new Error('second on'); added.add(fn) },
        off (event, fn) { added.delete(fn) }
      },
      end () {}
    }
    registerSocket('half', sock)
    assert.equal(added.size, 0, 'nothing stays attached')
    assert.equal(getSessionState('half').tracked, false)
  })

  test('ev.off and end throw: unregister and replace still complete and record the faults', () => {
    const faults = getStats().socketFaults.count
    const sock = { ev: { on () {}, off () { throw new Error('off broke') } }, end () { throw new Error('end broke') } }
    registerSocket('bad-off', sock)
    assert.equal(unregisterSocket('bad-off'), true)
    assert.equal(getSocket('bad-off'), null)
    assert.equal(getSessionState('bad-off'), null)
    const stats = getStats()
    assert.equal(stats.socketFaults.count, faults + 4, 'three ev.off calls and one end()')
    assert.match(stats.socketFaults.last, /end broke/)
    registerSocket('bad-off', sock)
    const replacement = { ev: { on () {}, off () {} }, end () {} }
    assert.equal(registerSocket('bad-off', replacement), replacement)
    assert.equal(getSocket('bad-off'), replacement)
  })

  test('no ev at all, or an end() that rejects: no throw, no unhandled rejection', async () => {
    const rejections = []
    const onRejection = (r) => rejections.push(r)
    process.on('unhandledRejection', onRejection)
    try {
      const bare = { end: () => Promise.reject(new Error('async end broke')) }
      registerSocket('bare', bare)
      assert.equal(getSessionState('bare').tracked, false)
      assert.match(getSessionState('bare').error, /no `ev`/)
      unregisterSocket('bare')
      await sleep(20)
      assert.deepEqual(rejections, [])
    } finally {
      process.off('unhandledRejection', onRejection)
    }
  })

  test('inactiveSessions lists sessions idle longer than idleAfterMs', async () => {
    try {
      configure({ idleAfterMs: 40 })
      registerSocket('idle', { ev: { on () {}, off () {} }, end () {} }, { track: false })
      registerSocket('busy', { ev: { on () {}, off () {} }, end () {} }, { track: false })
      assert.deepEqual(getStats().inactiveSessions, [])
      await sleep(60)
      registry.updateSessionState('busy', { note: 'still here' })
      const stats = getStats()
      assert.deepEqual(stats.inactiveSessions, ['idle'])
      assert.equal(stats.idleAfterMs, 40)
    } finally {
      configure({ idleAfterMs: 600000 })
    }
  })
})

describe('exit', () => {
  const fixture = (name) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url))
  for (const scenario of ['process-exit', 'natural-exit', 'worker-exit', 'worker-terminate']) {
    test(`${scenario} with sockets registered: exit code 0 and nothing on stderr`, () => {
      const child = spawnSync(process.execPath, [fixture('exit-with-sockets.mjs'), scenario], {
        encoding: 'utf8',
        timeout: 30000
      })
      assert.equal(child.stderr, '', 'stderr is empty')
      assert.equal(child.status, 0, `exit code (stdout: ${child.stdout})`)
      assert.match(child.stdout, /registered 5/)
    })
  }
})
