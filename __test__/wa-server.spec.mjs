// Proves the loopback WhatsApp server and the socket helpers drive REAL Baileys
// sockets (7.0.0-rc14, 6.7.24 and 6.17.16) into each state, without the registry.
// Run: node --test __test__/wa-server.spec.mjs

import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startWaServer } from './support/wa-server.mjs'
import {
  BUILDS,
  loadBaileys,
  buildOf,
  lineOf,
  makeCreds,
  makeTestSocket,
  waitForConnection,
  recordUpdates,
  statusCodeOf,
  endSocket
} from './support/baileys.mjs'

const TEST_TIMEOUT = 10_000

// Resource names -> counts, to compare process.getActiveResourcesInfo() snapshots.
const countResources = () => {
  const counts = {}
  for (const name of process.getActiveResourcesInfo()) counts[name] = (counts[name] ?? 0) + 1
  return counts
}

// Resources present now but not in `before` (more of a kind counts as extra).
const extraResources = (before) => {
  const now = countResources()
  const extra = {}
  for (const [name, n] of Object.entries(now)) {
    if (n > (before[name] ?? 0)) extra[name] = n - (before[name] ?? 0)
  }
  return extra
}

// Closed handles leave libuv a few loop turns later; poll briefly instead of guessing.
const settledExtraResources = async (before, ms = 1000) => {
  const until = Date.now() + ms
  let extra = extraResources(before)
  while (Object.keys(extra).length && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 10))
    extra = extraResources(before)
  }
  return extra
}

// Wait for a close and return its payload (sockets here must close, not open).
const waitForClose = (sock, timeoutMs = 5000) => waitForConnection(sock, 'close', timeoutMs)

for (const build of BUILDS) {
  const line = build.line
  describe(`Baileys ${build.key} against the loopback server`, () => {
    let baileys
    let server
    const sockets = new Set()

    // Every socket made here is ended in after(), even when an assertion fails.
    const socket = (opts) => {
      const sock = makeTestSocket({ baileys, ...opts })
      sockets.add(sock)
      return sock
    }

    before(async () => {
      baileys = await loadBaileys(build.key)
      server = await startWaServer({ baileys })
    })

    after(async () => {
      await Promise.all([...sockets].map((s) => endSocket(s)))
      await server.close()
      assert.deepEqual(server.errors, [], 'the server hit no internal errors')
    })

    test('loadBaileys gives the requested build with its factory', () => {
      assert.equal(buildOf(baileys), build.key)
      assert.equal(lineOf(baileys), line)
      assert.equal(typeof baileys.default, 'function')
      assert.equal(baileys.makeWASocket, baileys.default)
    })

    test("open: registered creds reach connection 'open' and creds.me gets the lid from <success>", { timeout: TEST_TIMEOUT }, async () => {
      const creds = makeCreds(baileys, { registered: true })
      const sock = socket({ url: server.url('open', { id: 'open_1' }), creds })
      const rec = recordUpdates(sock)
      const update = await waitForConnection(sock, 'open')
      assert.equal(update.connection, 'open')
      const [client] = server.clients('open_1')
      assert.equal(client.registered, true)
      assert.equal(client.username, creds.me.id.split(':')[0])
      assert.match(client.lid, /^\d+:1@lid$/)
      // creds.update { me: { ...me, lid: success.attrs.lid } } is applied before 'open'.
      assert.equal(sock.authState.creds.me.lid, client.lid)
      assert.equal(sock.authState.creds.me.id, creds.me.id)
      // sock.user is a snapshot taken at creation (the spread in makeWASocket
      // flattens the getter), so it never gets the lid: read creds.me instead.
      assert.equal(sock.user.lid, undefined)
      // The offline marker follows: the event buffer is flushed.
      await waitForConnection(sock, 'ready')
      assert.equal(rec.updates[0].connection, 'connecting')
      rec.stop()
    })

    test("qr: unregistered creds get a pair-device iq and a 'qr' string in connection.update", { timeout: TEST_TIMEOUT }, async () => {
      const sock = socket({ url: server.url('qr', { id: 'qr_1' }), registered: false })
      const update = await waitForConnection(sock, 'qr')
      assert.equal(typeof update.qr, 'string')
      assert.match(update.qr, /2@loopback-qr_1-0-/) // the first ref the server sent
      assert.equal(sock.authState.creds.me, undefined)
      assert.equal(server.clients('qr_1')[0].registered, false)
    })

    test('qr: refs rotate every qrTimeout and their end closes with 408', { timeout: TEST_TIMEOUT }, async () => {
      const sock = socket({ url: server.url('qr', { refs: 2 }), registered: false, qrTimeout: 50 })
      const rec = recordUpdates(sock)
      const close = await waitForClose(sock)
      const qrs = rec.updates.filter((u) => u.qr).map((u) => u.qr)
      assert.equal(qrs.length, 2)
      assert.notEqual(qrs[0], qrs[1])
      assert.equal(statusCodeOf(close), baileys.DisconnectReason.timedOut)
      assert.equal(close.lastDisconnect.error.message, 'QR refs attempts ended')
    })

    test('fail401: <failure reason="401"> closes with 401 (loggedOut)', { timeout: TEST_TIMEOUT }, async () => {
      const sock = socket({ url: server.url('fail401') })
      const close = await waitForClose(sock)
      assert.equal(statusCodeOf(close), 401)
      assert.equal(statusCodeOf(close), baileys.DisconnectReason.loggedOut)
      assert.equal(close.lastDisconnect.error.message, 'Connection Failure')
      assert.ok(close.lastDisconnect.date instanceof Date)
    })

    test('restart515: <stream:error code="515"> closes with 515 (restartRequired)', { timeout: TEST_TIMEOUT }, async () => {
      const sock = socket({ url: server.url('restart515') })
      const close = await waitForClose(sock)
      assert.equal(statusCodeOf(close), baileys.DisconnectReason.restartRequired)
      assert.equal(close.lastDisconnect.error.message, 'Stream Errored (restart required)')
    })

    test('replace(id) on an open socket closes it with 440 (connectionReplaced)', { timeout: TEST_TIMEOUT }, async () => {
      const sock = socket({ url: server.url('open', { id: 'rep_1' }) })
      await waitForConnection(sock, 'open')
      assert.equal(server.replace('rep_1'), 1)
      const close = await waitForClose(sock)
      assert.equal(statusCodeOf(close), baileys.DisconnectReason.connectionReplaced)
      assert.equal(close.lastDisconnect.error.message, 'Stream Errored (conflict)')
    })

    test('drop(id) on an open socket closes it (428 Connection Terminated) and the server forgets it', { timeout: TEST_TIMEOUT }, async () => {
      const keep = socket({ url: server.url('open', { id: 'keep_1' }) })
      const sock = socket({ url: server.url('open', { id: 'drop_1' }) })
      await Promise.all([waitForConnection(keep, 'open'), waitForConnection(sock, 'open')])
      const connected = server.connections
      assert.equal(server.drop('drop_1'), 1)
      const close = await waitForClose(sock)
      assert.equal(statusCodeOf(close), baileys.DisconnectReason.connectionClosed)
      assert.equal(close.lastDisconnect.error.message, 'Connection Terminated')
      assert.equal(server.clients('drop_1').length, 0)
      assert.equal(server.connections, connected - 1)
      assert.equal(server.clients('keep_1').length, 1, 'other clients stay connected')
      assert.equal(keep.ws.isOpen, true)
    })

    test('dropAll() closes every client with 428 and leaves the server empty', { timeout: TEST_TIMEOUT }, async () => {
      const socks = [1, 2, 3].map((i) => socket({ url: server.url('open', { id: `all_${i}` }) }))
      await Promise.all(socks.map((s) => waitForConnection(s, 'open')))
      const closes = socks.map((s) => waitForClose(s))
      assert.equal(server.dropAll(), server.connections)
      for (const close of await Promise.all(closes)) {
        assert.equal(statusCodeOf(close), baileys.DisconnectReason.connectionClosed)
      }
      assert.equal(server.connections, 0)
    })

    test('sendNode(id, node) reaches a logged-in client (a stream error code 503 closes it)', { timeout: TEST_TIMEOUT }, async () => {
      const sock = socket({ url: server.url('open', { id: 'node_1' }) })
      await waitForConnection(sock, 'open')
      assert.equal(server.sendNode('node_1', { tag: 'stream:error', attrs: { code: '503' } }), 1)
      const close = await waitForClose(sock)
      assert.equal(statusCodeOf(close), baileys.DisconnectReason.unavailableService)
    })

    test('accept-close: the server accepts then closes, the client closes with 428', { timeout: TEST_TIMEOUT }, async () => {
      const sock = socket({ url: server.url('accept-close') })
      const close = await waitForClose(sock)
      assert.equal(statusCodeOf(close), baileys.DisconnectReason.connectionClosed)
      assert.equal(close.lastDisconnect.error.message, 'Connection Terminated')
    })

    test('silent: no answer, the client gives up after connectTimeoutMs with 408', { timeout: TEST_TIMEOUT }, async () => {
      const started = Date.now()
      const sock = socket({ url: server.url('silent'), connectTimeoutMs: 200 })
      const close = await waitForClose(sock)
      assert.ok(Date.now() - started >= 190, 'not before connectTimeoutMs')
      assert.equal(statusCodeOf(close), baileys.DisconnectReason.timedOut)
      assert.equal(close.lastDisconnect.error.message, 'Timed Out')
    })

    test('junk: undecodable bytes close with a plain Error that has no output', { timeout: TEST_TIMEOUT }, async () => {
      const sock = socket({ url: server.url('junk') })
      const close = await waitForClose(sock)
      const error = close.lastDisconnect.error
      assert.ok(error instanceof Error)
      assert.equal(error.output, undefined)
      assert.equal(error.isBoom, undefined)
      assert.equal(statusCodeOf(close), undefined)
      assert.match(error.message, /invalid wire type/)
    })

    test('end(error) emits one close with that error, then drops connection.update listeners', { timeout: TEST_TIMEOUT }, async () => {
      const sock = socket({ url: server.url('open') })
      const rec = recordUpdates(sock)
      await waitForConnection(sock, 'ready')
      const bye = new Error('bye')
      const result = sock.end(bye)
      // 6.x end() is synchronous; 7.x (since rc10) returns a promise.
      assert.equal(result instanceof Promise, line === 7)
      await result
      const closes = rec.updates.filter((u) => u.connection === 'close')
      assert.equal(closes.length, 1)
      assert.equal(closes[0].lastDisconnect.error, bye)
      // Both lines call ev.removeAllListeners('connection.update') after that close
      // (7.x then ev.destroy()), so our recorder is gone; ev.off stays harmless.
      const inner = sock.ev.on('probe', () => {})
      assert.equal(inner.listenerCount('connection.update'), 0)
      assert.doesNotThrow(() => rec.stop())
      await sock.end(new Error('again'))
      assert.equal(rec.updates.filter((u) => u.connection === 'close').length, 1, 'a second end() emits nothing')
    })
  })
}

describe('cross-build: 7.0.0-rc14 and 6.7.24 share a codec, so either can serve the other', () => {
  for (const [serverLine, clientLine] of [['6.7.24', '7.0.0-rc14'], ['7.0.0-rc14', '6.7.24']]) {
    test(`server on ${serverLine}, client on ${clientLine} reaches open and qr`, { timeout: TEST_TIMEOUT }, async () => {
      const server = await startWaServer({ baileys: await loadBaileys(serverLine) })
      const baileys = await loadBaileys(clientLine)
      const open = makeTestSocket({ baileys, url: server.url('open') })
      const qr = makeTestSocket({ baileys, url: server.url('qr'), registered: false })
      // Listen before awaiting anything: updates are not replayed to late listeners.
      const opened = waitForConnection(open, 'open')
      const gotQr = waitForConnection(qr, 'qr')
      try {
        await opened
        assert.match(open.authState.creds.me.lid, /@lid$/)
        assert.equal(typeof (await gotQr).qr, 'string')
      } finally {
        await endSocket(open)
        await endSocket(qr)
        await server.close()
      }
      assert.deepEqual(server.errors, [])
    })
  }
})

describe('the codec must be the client build\'s', () => {
  test('6.17.16 never opens against a server that encodes with 7.0.0-rc14\'s token dictionaries', { timeout: TEST_TIMEOUT }, async () => {
    const server = await startWaServer({ baileys: await loadBaileys('7.0.0-rc14') })
    const sock = makeTestSocket({ baileys: await loadBaileys('6.17.16'), url: server.url('open') })
    const rec = recordUpdates(sock)
    try {
      await assert.rejects(waitForConnection(sock, 'open', 1500), /no matching connection.update/)
      assert.deepEqual(rec.updates.map((u) => u.connection).filter(Boolean), ['connecting'])
    } finally {
      await endSocket(sock)
      await server.close()
    }
  })
})

describe('100 concurrent sockets', () => {
  for (const build of BUILDS) {
    const line = build.key
    test(`${line}: 100 sockets reach open, then end and leave no handles or timers`, { timeout: 30_000 }, async (t) => {
      const resourcesBefore = countResources()
      const baileys = await loadBaileys(line)
      const server = await startWaServer({ baileys })
      const N = 100
      const started = Date.now()
      const socks = Array.from({ length: N }, (_, i) =>
        makeTestSocket({ baileys, url: server.url('open', { id: `bulk_${i}` }) })
      )
      try {
        // Both waits start now: connection.update is not replayed to late listeners.
        const ready = socks.map((s) => waitForConnection(s, 'ready', 20_000))
        const opened = await Promise.all(socks.map((s) => waitForConnection(s, 'open', 20_000)))
        t.diagnostic(`${line}: ${N} sockets open in ${Date.now() - started} ms`)
        assert.equal(opened.length, N)
        assert.equal(server.connections, N)
        assert.equal(new Set(socks.map((s) => s.authState.creds.me.lid)).size, N, 'each socket got its own lid')
        // The offline marker too, so no buffer flush is pending when we end.
        await Promise.all(ready)
      } finally {
        const endStarted = Date.now()
        await Promise.all(socks.map((s) => endSocket(s)))
        t.diagnostic(`${line}: ended ${N} sockets in ${Date.now() - endStarted} ms`)
        await server.close()
      }
      assert.ok(socks.every((s) => s.ws.isClosed))
      assert.equal(server.connections, 0)
      assert.deepEqual(server.errors, [])

      const extra = await settledExtraResources(resourcesBefore)
      assert.deepEqual(extra, {}, `resources left after ending ${N} sockets and closing the server`)
    })
  }
})
