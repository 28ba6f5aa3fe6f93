// Loopback WhatsApp edge server for tests.
//
// It plays the server half of the WhatsApp Noise XX handshake with Baileys' own
// exports (proto, Curve, hkdf, sha256, AES-GCM, binary node codec), so a real,
// unmodified Baileys socket (7.0.0-rc14, 6.7.24, 6.17.16) can be driven into the states a
// multi-session registry has to handle: open, qr, logged out (401), restart
// (515), replaced (440), dropped, refused, silent and garbage.
//
// Each client says what it wants through the query string of its URL
// (Baileys keeps `waWebSocketUrl` as a URL object and hands it to `ws` as is):
//   ws://127.0.0.1:PORT/ws/chat?mode=open&id=user_1

import { EventEmitter } from 'node:events'
import { randomBytes } from 'node:crypto'
import { WebSocketServer } from 'ws'

// Same 32-byte protocol name the client starts its handshake hash from.
const NOISE_MODE = 'Noise_XX_25519_AESGCM_SHA256\0\0\0\0'
// "WA", 6, dict version: the client sends it once, before its first frame.
const WA_HEADER_LENGTH = 4
const S_WHATSAPP_NET = 's.whatsapp.net'
const EMPTY = Buffer.alloc(0)
// Field 1 with wire type 6: protobufjs throws a plain Error ("invalid wire type 6").
const JUNK = Buffer.from([0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e])

export const MODES = Object.freeze([
  'open', // log in (registered creds) or pair (unregistered creds, like real WA)
  'qr', // always send a pair-device iq with refs -> connection.update { qr }
  'fail', // <failure reason=code> (default 401)
  'fail401',
  'stream-error', // <stream:error code=code> (default 515)
  'restart515',
  'accept-close', // accept the websocket, then close it -> 428
  'silent', // accept and never answer -> client times out
  'junk' // answer the client hello with undecodable bytes -> plain Error
])

// 12-byte GCM IV with the counter big-endian in the last 4 bytes (as the client).
const ivFor = (counter) => {
  const iv = Buffer.alloc(12)
  iv.writeUInt32BE(counter, 8)
  return iv
}

// 3-byte big-endian length prefix, the framing used inside websocket messages.
const frame = (data) => {
  const out = Buffer.allocUnsafe(3 + data.length)
  out[0] = (data.length >>> 16) & 0xff
  out[1] = (data.length >>> 8) & 0xff
  out[2] = data.length & 0xff
  out.set(data, 3)
  return out
}

const turn = () => new Promise((resolve) => setImmediate(resolve))

const firstChildTag = (node) => (Array.isArray(node?.content) ? node.content[0]?.tag : undefined)

/**
 * Start a loopback WhatsApp server.
 * @param {object} [options]
 * @param {object} [options.baileys] Baileys module namespace (from loadBaileys) whose
 *   crypto/proto/binary-node exports the server uses (default: 7.0.0-rc14). Pass the build
 *   the clients run: the token dictionaries of the binary-node codec differ between builds
 *   (6.17.16 misreads 7.0.0-rc14's `<success>` and never opens).
 * @param {number} [options.firstNodeDelayMs=30] wait between the handshake and the first
 *   node: 6.x does not await its own key split, so an immediate node would be lost.
 * @param {number} [options.preKeyCount=50] answer to the client's pre-key count query
 *   (above 5 so the client does not generate and upload pre-keys).
 */
export async function startWaServer ({ baileys, firstNodeDelayMs = 30, preKeyCount = 50 } = {}) {
  const b = baileys ?? (await import('@whiskeysockets/baileys'))
  const server = new WaServer(b, { firstNodeDelayMs, preKeyCount })
  await server._listen()
  return server
}

class WaServer extends EventEmitter {
  constructor (b, options) {
    super()
    this.b = b
    this.options = options
    this.port = 0
    // Every live connection; `closed` ones are removed on the ws 'close' event.
    this._conns = new Set()
    // Unexpected server-side failures, kept so tests can assert there were none.
    this.errors = []
    this._seq = 0
    this._idSeq = 0
    // One static key pair and certificate chain for the server's lifetime; per
    // connection they would only cost CPU with 100 clients. 6.x checks just the
    // intermediate's issuerSerial; 7.x also calls Curve.verify on both
    // signatures, which throws only on malformed input (libsignal returns a
    // boolean that Baileys ignores), so a bad signature of the right size passes.
    this._static = b.Curve.generateKeyPair()
    this._certChain = this._makeCertChain()
  }

  _makeCertChain () {
    const { proto, Curve } = this.b
    const Details = proto.CertChain.NoiseCertificate.Details
    const intermediateKey = Curve.generateKeyPair()
    // issuerSerial 0 is what both lines compare against WA_CERT_DETAILS.SERIAL.
    const intermediateDetails = Details.encode({
      serial: 1,
      issuerSerial: 0,
      key: intermediateKey.public,
      issuer: 'WhatsAppLongTerm1',
      subject: 'loopback-intermediate'
    }).finish()
    const leafDetails = Details.encode({
      serial: 2,
      issuerSerial: 1,
      key: this._static.public,
      issuer: 'loopback-intermediate',
      subject: 'loopback-leaf'
    }).finish()
    return proto.CertChain.encode({
      // The leaf is really signed by the intermediate key, so it stays valid
      // should a later 7.x start honouring the verify result.
      leaf: { details: leafDetails, signature: Buffer.from(Curve.sign(intermediateKey.private, leafDetails)) },
      // We cannot sign with WhatsApp's root key: any 64 bytes (see above).
      intermediate: { details: intermediateDetails, signature: randomBytes(64) }
    }).finish()
  }

  async _listen () {
    this.wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/ws/chat' })
    await new Promise((resolve, reject) => {
      this.wss.once('listening', resolve)
      this.wss.once('error', reject)
    })
    this.wss.on('error', (err) => this._fail(null, err))
    this.port = this.wss.address().port
    this.wss.on('connection', (ws, req) => this._onConnection(ws, req))
  }

  /**
   * URL for makeWASocket's `waWebSocketUrl`.
   * opts: id (label for replace/drop/sendNode), code (fail / stream-error), lid
   * (for the success node), refs (number of QR refs), delay (ms before the first
   * node), and any other key, which is passed through into `client.params`.
   */
  url (mode = 'open', opts = {}) {
    if (!MODES.includes(mode)) throw new Error(`unknown wa-server mode: ${mode}`)
    const q = new URLSearchParams({ mode })
    for (const [k, v] of Object.entries(opts)) {
      if (v !== undefined && v !== null) q.set(k, String(v))
    }
    return `ws://127.0.0.1:${this.port}/ws/chat?${q}`
  }

  /** Number of websocket connections open right now. */
  get connections () {
    return this._conns.size
  }

  /** Snapshot of the live connections, optionally only those with this id. */
  clients (id) {
    return [...this._conns].filter((c) => id === undefined || c.id === id).map(publicInfo)
  }

  /** Send `<stream:error><conflict type="replaced"/></stream:error>` (client: 440). */
  replace (id) {
    return this._eachLive(id, (c) =>
      this._send(c, {
        tag: 'stream:error',
        attrs: {},
        content: [{ tag: 'conflict', attrs: { type: 'replaced' } }]
      })
    )
  }

  /** Abruptly destroy the TCP connection (no close frame; client: 428). */
  drop (id) {
    return this._eachLive(id, (c) => c.ws.terminate(), true)
  }

  /** drop() for every connection. */
  dropAll () {
    let n = 0
    for (const c of this._conns) {
      c.ws.terminate()
      n++
    }
    return n
  }

  /** Push an arbitrary binary node to every connection with this id that finished the handshake. */
  sendNode (id, node) {
    return this._eachLive(id, (c) => this._send(c, node))
  }

  /** Close every connection and the listening socket; leaves no handles behind. */
  async close () {
    for (const c of this._conns) {
      this._clearTimers(c)
      c.ws.terminate()
    }
    // terminate() destroys the sockets; their 'close' events follow shortly.
    for (let i = 0; i < 100 && this._conns.size; i++) await turn()
    await new Promise((resolve) => this.wss.close(() => resolve()))
    // net.Server emits 'close' before libuv has released the listening handle:
    // two more loop turns and process.getActiveResourcesInfo() no longer lists it.
    await turn()
    await turn()
  }

  // Applies fn to live connections with this id and returns how many; unless
  // anyState, only to connections past the handshake (nodes need its keys).
  _eachLive (id, fn, anyState = false) {
    let n = 0
    for (const c of this._conns) {
      if (c.id !== id) continue
      if (!anyState && !c.send) continue
      fn(c)
      n++
    }
    return n
  }

  _onConnection (ws, req) {
    const params = Object.fromEntries(new URL(req.url, 'http://loopback').searchParams)
    const c = {
      seq: ++this._seq,
      id: params.id ?? `conn_${this._seq}`,
      mode: params.mode ?? 'open',
      params,
      ws,
      state: 'hello',
      inBytes: EMPTY,
      sawHeader: false,
      queue: Promise.resolve(),
      timers: new Set(),
      registered: undefined,
      username: undefined,
      device: undefined,
      pushName: undefined,
      lid: undefined,
      loggedIn: false,
      ready: false,
      offlineTimer: null,
      received: [],
      send: null
    }
    this._conns.add(c)
    ws.on('error', () => {}) // ECONNRESET and the like: 'close' follows
    ws.on('close', () => {
      c.state = 'closed'
      this._clearTimers(c)
      this._conns.delete(c)
      this.emit('disconnect', publicInfo(c))
    })
    this.emit('connect', publicInfo(c))

    if (!MODES.includes(c.mode)) {
      // A hand-made URL with a typo: fail loudly rather than act like 'silent'.
      this._fail(c, new Error(`unknown wa-server mode: ${c.mode}`))
      return
    }
    if (c.mode === 'accept-close') {
      ws.close()
      return
    }
    if (c.mode === 'silent') return
    // Serialize message handling: 6.x hkdf and node decoding are async.
    ws.on('message', (data) => {
      c.queue = c.queue.then(() => this._onData(c, data)).catch((err) => this._fail(c, err))
    })
  }

  _fail (c, err) {
    this.errors.push(err)
    this.emit('server-error', err, c && publicInfo(c))
    if (c) c.ws.terminate()
  }

  _clearTimers (c) {
    for (const t of c.timers) clearTimeout(t)
    c.timers.clear()
  }

  _later (c, ms, fn) {
    const t = setTimeout(() => {
      c.timers.delete(t)
      if (c.state !== 'closed') Promise.resolve().then(fn).catch((err) => this._fail(c, err))
    }, ms)
    c.timers.add(t)
    return t
  }

  _cancel (c, t) {
    clearTimeout(t)
    c.timers.delete(t)
  }

  async _onData (c, data) {
    if (c.state === 'closed') return
    let bytes = Buffer.isBuffer(data) ? data : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)])
    if (!c.sawHeader) {
      // A client with routingInfo prefixes "ED",0,1,len(3),routingInfo; we never
      // send edge_routing, so only the plain 4-byte header is expected.
      if (bytes[0] === 0x45 && bytes[1] === 0x44) {
        const len = (bytes[4] << 16) | (bytes[5] << 8) | bytes[6]
        bytes = bytes.subarray(7 + len)
      }
      c.header = Buffer.from(bytes.subarray(0, WA_HEADER_LENGTH))
      bytes = bytes.subarray(WA_HEADER_LENGTH)
      c.sawHeader = true
    }
    c.inBytes = c.inBytes.length ? Buffer.concat([c.inBytes, bytes]) : Buffer.from(bytes)
    while (c.inBytes.length >= 3 && c.state !== 'closed') {
      const size = (c.inBytes[0] << 16) | (c.inBytes[1] << 8) | c.inBytes[2]
      if (c.inBytes.length < size + 3) return
      const payload = c.inBytes.subarray(3, size + 3)
      c.inBytes = c.inBytes.subarray(size + 3)
      await this._onFrame(c, payload)
    }
  }

  async _onFrame (c, payload) {
    const { proto } = this.b
    if (c.state === 'hello') {
      const { clientHello } = proto.HandshakeMessage.decode(payload)
      if (c.mode === 'junk') {
        c.state = 'junk'
        c.ws.send(frame(JUNK))
        return
      }
      await this._serverHello(c, Buffer.from(clientHello.ephemeral))
      c.state = 'finish'
    } else if (c.state === 'finish') {
      const { clientFinish } = proto.HandshakeMessage.decode(payload)
      await this._clientFinish(c, clientFinish)
      c.state = 'transport'
      const delay = Number(c.params.delay ?? this.options.firstNodeDelayMs)
      this._later(c, delay, () => this._afterHandshake(c))
    } else if (c.state === 'transport') {
      const plain = this.b.aesDecryptGCM(payload, c.recvKey, ivFor(c.readCounter++), EMPTY)
      const node = await this.b.decodeBinaryNode(plain)
      await this._onNode(c, node)
    }
  }

  // --- Noise XX, server side (mirror of Utils/noise-handler.js) ---

  _mixHash (n, data) {
    n.hash = this.b.sha256(Buffer.concat([n.hash, data]))
  }

  async _mixKey (n, data) {
    // 6.x hkdf is async (WebCrypto), 7.x sync: await covers both.
    const key = Buffer.from(await this.b.hkdf(Buffer.from(data), 64, { salt: n.salt, info: '' }))
    n.salt = key.subarray(0, 32)
    n.key = key.subarray(32)
    n.counter = 0
  }

  _encrypt (n, plaintext) {
    const out = this.b.aesEncryptGCM(plaintext, n.key, ivFor(n.counter++), n.hash)
    this._mixHash(n, out)
    return out
  }

  _decrypt (n, ciphertext) {
    const out = this.b.aesDecryptGCM(ciphertext, n.key, ivFor(n.counter++), n.hash)
    this._mixHash(n, ciphertext)
    return out
  }

  async _serverHello (c, clientEphemeral) {
    const { Curve, proto } = this.b
    const start = Buffer.from(NOISE_MODE)
    const n = { hash: start, salt: start, key: start, counter: 0 }
    c.noise = n
    this._mixHash(n, c.header)
    this._mixHash(n, clientEphemeral)
    c.ephemeral = Curve.generateKeyPair()
    this._mixHash(n, c.ephemeral.public)
    await this._mixKey(n, Curve.sharedKey(c.ephemeral.private, clientEphemeral))
    const staticEnc = this._encrypt(n, this._static.public)
    await this._mixKey(n, Curve.sharedKey(this._static.private, clientEphemeral))
    const payloadEnc = this._encrypt(n, this._certChain)
    const hello = proto.HandshakeMessage.encode({
      serverHello: { ephemeral: c.ephemeral.public, static: staticEnc, payload: payloadEnc }
    }).finish()
    c.ws.send(frame(hello))
  }

  async _clientFinish (c, clientFinish) {
    const { Curve, proto, hkdf } = this.b
    const n = c.noise
    const clientStatic = this._decrypt(n, Buffer.from(clientFinish.static))
    await this._mixKey(n, Curve.sharedKey(c.ephemeral.private, clientStatic))
    const payload = proto.ClientPayload.decode(this._decrypt(n, Buffer.from(clientFinish.payload)))
    // A login payload carries username/device; a registration one devicePairingData.
    c.registered = payload.username != null && !payload.devicePairingData
    c.username = payload.username != null ? String(payload.username) : undefined
    c.device = payload.device ?? 0
    c.pushName = payload.pushName ?? undefined
    // Final split: the client writes with the first half and reads with the second.
    const keys = Buffer.from(await hkdf(EMPTY, 64, { salt: n.salt, info: '' }))
    c.recvKey = keys.subarray(0, 32)
    c.sendKey = keys.subarray(32)
    c.readCounter = 0
    c.writeCounter = 0
    c.noise = null
    c.send = (node) => {
      const plain = this.b.encodeBinaryNode(node)
      const enc = this.b.aesEncryptGCM(plain, c.sendKey, ivFor(c.writeCounter++), EMPTY)
      c.ws.send(frame(enc))
    }
  }

  _send (c, node) {
    if (c.state === 'closed' || !c.send) return false
    c.send(node)
    return true
  }

  _nextId () {
    return `srv.${++this._idSeq}`
  }

  _afterHandshake (c) {
    const code = (fallback) => String(c.params.code ?? fallback)
    switch (c.mode) {
      case 'open':
        if (c.registered) return this._login(c)
        return this._pair(c) // what WhatsApp does with an unpaired client
      case 'qr':
        return this._pair(c)
      case 'fail':
      case 'fail401':
        return this._send(c, {
          tag: 'failure',
          attrs: { reason: c.mode === 'fail401' ? '401' : code(401), location: 'loopback' }
        })
      case 'stream-error':
      case 'restart515':
        return this._send(c, {
          tag: 'stream:error',
          attrs: { code: c.mode === 'restart515' ? '515' : code(515) }
        })
    }
  }

  _login (c) {
    // Stable per phone number, so reconnects of one user see the same lid.
    const lidUser = c.username ? (BigInt(c.username) + 100000000000000n).toString() : `${c.seq}`
    c.lid = c.params.lid ?? `${lidUser}:${c.device}@lid`
    c.loggedIn = true
    this._send(c, {
      tag: 'success',
      attrs: {
        t: String(Math.floor(Date.now() / 1000)),
        props: '0',
        location: 'loopback',
        creation: String(Math.floor(Date.now() / 1000)),
        lid: c.lid
      }
    })
    this.emit('login', publicInfo(c))
  }

  _pair (c) {
    const count = Math.max(1, Number(c.params.refs ?? 6))
    const refs = Array.from({ length: count }, (_, i) => ({
      tag: 'ref',
      attrs: {},
      content: Buffer.from(`2@loopback-${c.id}-${i}-${randomBytes(6).toString('hex')}`)
    }))
    this._send(c, {
      tag: 'iq',
      attrs: { from: S_WHATSAPP_NET, type: 'set', id: this._nextId(), xmlns: 'md' },
      content: [{ tag: 'pair-device', attrs: {}, content: refs }]
    })
  }

  async _onNode (c, node) {
    c.received.push(node.tag === 'iq' ? `iq:${node.attrs.xmlns}:${firstChildTag(node) ?? ''}` : node.tag)
    if (c.received.length > 50) c.received.shift()
    this.emit('node', publicInfo(c), node)
    if (node.tag !== 'iq') return
    const { type, xmlns, id } = node.attrs
    if (type !== 'get' && type !== 'set') return // e.g. the client's reply to pair-device
    const child = firstChildTag(node)
    let content
    if (xmlns === 'encrypt' && child === 'count') {
      content = [{ tag: 'count', attrs: { value: String(c.params.prekeys ?? this.options.preKeyCount) } }]
    } else if (xmlns === 'encrypt' && child === 'digest') {
      // 7.x only checks that a digest child exists (else it uploads pre-keys).
      content = [{ tag: 'digest', attrs: {} }]
    }
    this._send(c, { tag: 'iq', attrs: { from: S_WHATSAPP_NET, type: 'result', id }, content })
    // The end of the offline backlog flushes the client's event buffer and gives
    // connection.update { receivedPendingNotifications: true }. Real WhatsApp
    // sends it after the client is open; the client emits 'open' after its
    // passive iq (6.x) or after the digest iq that follows it (7.x), so wait a
    // little after the last of these replies.
    if (!c.ready && (xmlns === 'passive' || (c.offlineTimer && xmlns === 'encrypt' && child === 'digest'))) {
      if (c.offlineTimer) this._cancel(c, c.offlineTimer)
      c.offlineTimer = this._later(c, Number(c.params.offlineDelay ?? 10), () => this._sendOffline(c))
    }
  }

  _sendOffline (c) {
    c.offlineTimer = null
    if (c.ready) return
    c.ready = true
    this._send(c, { tag: 'ib', attrs: {}, content: [{ tag: 'offline', attrs: { count: '0' } }] })
    this.emit('ready', publicInfo(c))
  }
}

function publicInfo (c) {
  return {
    id: c.id,
    seq: c.seq,
    mode: c.mode,
    params: c.params,
    state: c.state,
    registered: c.registered,
    username: c.username,
    device: c.device,
    pushName: c.pushName,
    lid: c.lid,
    loggedIn: c.loggedIn,
    ready: c.ready,
    received: [...c.received]
  }
}
