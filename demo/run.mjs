// npm run demo: the registry's main job, on a laptop.
//
// Starts the loopback WhatsApp server the tests use (it plays WhatsApp's side of
// the handshake on 127.0.0.1), creates 100 real Baileys sockets the way a bot
// does (createBaileysSocket -> makeWASocket + registerSocket), shows their
// statuses live while they connect, prints getStats(), then replaces a few
// sockets, has the server throw out or drop a few connections, and shows the
// registry following (a bot-style reconnect included). It ends every socket and
// checks that no handle is left, then exits on its own.
//
// Needs the built addon (npm install, or npm run build) and the devDependencies.
// DEMO_SESSIONS=N changes the number of sessions (default 100).

import { readFileSync } from 'node:fs'
import { loadBaileys, makeCreds, makeMemoryKeyStore, sharedCaches, silentLogger } from '../__test__/support/baileys.mjs'
import { startWaServer } from '../__test__/support/wa-server.mjs'
import {
  clearAll,
  getAllSockets,
  getSessionState,
  getSocket,
  getSocketCount,
  getStats,
  onStateChange,
  registerSocket,
  waitForState
} from '../index.js' // the package entry point: import { ... } from 'baileys-socket-registry'

const TOTAL = Number(process.env.DEMO_SESSIONS ?? 100)
const QR = Math.max(1, Math.round(TOTAL * 0.03)) // never paired: waiting for a QR scan
const LOGGED_OUT = Math.max(1, Math.round(TOTAL * 0.02)) // server answers 401
const tty = Boolean(process.stdout.isTTY)
const started = Date.now()
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(2).padStart(6)} s`
const pad = (n, width = 3) => String(n).padStart(width)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const STATUSES = ['connecting', 'qr', 'open', 'closed', 'loggedOut', 'replaced', 'restartRequired']

const baileys = await loadBaileys(7)
const baileysVersion = JSON.parse(readFileSync(new URL('../node_modules/@whiskeysockets/baileys/package.json', import.meta.url), 'utf8')).version
const makeWASocket = baileys.makeWASocket
const server = await startWaServer({ baileys })
const modes = new Map() // sessionId -> what the loopback server does with it

// ---- the bot's code: config/baileys.js -------------------------------------
function createBaileysSocket (authState, sessionId) {
  const query = new URLSearchParams({ mode: modes.get(sessionId) ?? 'open', id: sessionId })
  const sock = makeWASocket({
    auth: authState,
    waWebSocketUrl: `ws://127.0.0.1:${server.port}/ws/chat?${query}`, // a bot leaves this out
    logger: silentLogger,
    printQRInTerminal: false,
    fireInitQueries: false,
    markOnlineOnConnect: false,
    shouldSyncHistoryMessage: () => false,
    ...sharedCaches // one set of caches for all sessions
  })
  return registerSocket(sessionId, sock)
}
// ----------------------------------------------------------------------------

function authStateFor (sessionId) {
  // In-memory credentials (a bot would use useMultiFileAuthState): paired unless 'qr'.
  return { creds: makeCreds(baileys, { registered: modes.get(sessionId) !== 'qr' }), keys: makeMemoryKeyStore() }
}

function countsLine () {
  const { byStatus, totalSessions, connectedSessions } = getStats()
  const parts = STATUSES.filter((s) => byStatus[s] > 0 || s === 'open' || s === 'connecting').map((s) => `${s} ${pad(byStatus[s])}`)
  return `${parts.join(' | ')}   (${pad(totalSessions)} registered, ${pad(connectedSessions.length)} connected)`
}

/** Shows the counts per status until `done` resolves: one redrawn line on a terminal, else a line per change. */
async function showProgress (label, done) {
  let finished = false
  done.finally(() => { finished = true })
  let last = ''
  while (!finished) {
    const line = `[${elapsed()}] ${label}: ${countsLine()}`
    if (tty) process.stdout.write(`\r\x1b[K${line}`)
    else if (line.slice(11) !== last.slice(11)) console.log(line)
    last = line
    await sleep(tty ? 50 : 250)
  }
  const line = `[${elapsed()}] ${label}: ${countsLine()}`
  if (tty) process.stdout.write(`\r\x1b[K${line}\n`)
  else console.log(line)
  return done
}

function printStats (title) {
  const s = getStats()
  console.log(`\n${title}`)
  const rows = [
    ['totalSessions', s.totalSessions],
    ['connectedSessions', `${s.connectedSessions.length} ids`],
    ['disconnectedSessions', `${s.disconnectedSessions.length} ids: ${s.disconnectedSessions.join(', ')}`],
    ['errorSessions', s.errorSessions.map((e) => `${e.sessionId} (${e.error})`).join(', ') || '[]'],
    ['inactiveSessions', `${s.inactiveSessions.length} (idle > ${s.idleAfterMs / 60000} min)`],
    ['byStatus', Object.entries(s.byStatus).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ')],
    ['socketFaults', s.socketFaults.count]
  ]
  for (const [k, v] of rows) console.log(`  ${k.padEnd(21)} ${v}`)
  const head = ['sessionId', 'status', 'isConnected', 'createdAt', 'lastActivity', 'error']
  const widths = [10, 11, 11, 24, 24, 0]
  const show = (cells) => console.log('  ' + cells.map((c, i) => String(c).padEnd(widths[i])).join(' ').trimEnd())
  console.log('\n  activeSessions (first 5 and every session not open):')
  show(head)
  const picked = s.activeSessions.filter((row, i) => i < 5 || row.status !== 'open')
  for (const row of picked) show([row.sessionId, row.status, row.isConnected, row.createdAt, row.lastActivity, row.error ?? 'null'])
  console.log(`  ... ${s.activeSessions.length - picked.length} more rows, all open`)
}

// 1. Create the sessions.
const ids = Array.from({ length: TOTAL }, (_, i) => `user_${String(i + 1).padStart(3, '0')}`)
for (const id of ids.slice(TOTAL - QR - LOGGED_OUT, TOTAL - LOGGED_OUT)) modes.set(id, 'qr')
for (const id of ids.slice(TOTAL - LOGGED_OUT)) modes.set(id, 'fail401')
console.log(`Loopback WhatsApp server on 127.0.0.1:${server.port}; creating ${TOTAL} Baileys ${baileysVersion} sessions`)
console.log(`(${TOTAL - QR - LOGGED_OUT} paired, ${QR} never paired -> QR, ${LOGGED_OUT} whose credentials the server rejects -> 401)\n`)
for (const id of ids) createBaileysSocket(authStateFor(id), id)
const wanted = (id) => (modes.get(id) === 'qr' ? 'qr' : modes.get(id) === 'fail401' ? 'loggedOut' : 'open')
await showProgress('connecting', Promise.all(ids.map((id) => waitForState(id, wanted(id), { timeoutMs: 30000 }))))
printStats(`getStats() once every session settled (${elapsed().trim()} after start):`)

// From here on, print the registry's events as they come, and reconnect the way a bot
// does: a socket closed for a reason that allows it (not a logout, not a takeover) gets a
// new one under the same id.
const reconnecting = new Set()
const off = onStateChange(({ sessionId, type, previous, current }) => {
  const from = previous?.status ?? '-'
  const to = current?.status ?? '-'
  const why = current?.lastDisconnect && to !== 'open' && to !== 'connecting'
    ? `  (${current.lastDisconnect.code} ${current.lastDisconnect.reason}: ${current.lastDisconnect.message})`
    : ''
  console.log(`  [${elapsed()}] event ${type.padEnd(10)} ${sessionId}  ${from} -> ${to}${why}`)
  if (type === 'status' && to === 'closed' && !reconnecting.has(sessionId)) {
    reconnecting.add(sessionId)
    console.log(`  [${elapsed()}]   bot: ${sessionId} closed, making a new socket`)
    createBaileysSocket(authStateFor(sessionId), sessionId)
  }
})

// 2. The bot replaces three sockets: registerSocket under the same id ends the old one.
const replacedByBot = ids.slice(0, 3)
console.log(`\nThe bot makes new sockets for ${replacedByBot.join(', ')} (the registry ends the old ones):`)
const oldSockets = replacedByBot.map((id) => getSocket(id))
for (const id of replacedByBot) createBaileysSocket(authStateFor(id), id)
await Promise.all(replacedByBot.map((id) => waitForState(id, 'open', { timeoutMs: 10000 })))
while (!oldSockets.every((s) => s.ws.isClosed)) await sleep(10)
console.log(`  old sockets closed: ${oldSockets.every((s) => s.ws.isClosed)}; getSocket() returns the new ones: ${replacedByBot.every((id, i) => getSocket(id) !== oldSockets[i])}`)

// 3. The server side: another client takes two sessions over (440), three connections drop (428).
const takenOver = ids.slice(3, 5)
const dropped = ids.slice(5, 8)
console.log(`\nServer: ${takenOver.join(', ')} replaced by another client (440); connections of ${dropped.join(', ')} dropped (428):`)
for (const id of takenOver) server.replace(id)
for (const id of dropped) server.drop(id)
await Promise.all([
  ...takenOver.map((id) => waitForState(id, 'replaced', { timeoutMs: 10000 })),
  ...dropped.map(async (id) => {
    while (!reconnecting.has(id)) await sleep(5)
    return waitForState(id, 'open', { timeoutMs: 10000 })
  })
])
await sleep(50) // the last events are delivered after the change
off()
console.log(`\n[${elapsed()}] after: ${countsLine()}`)
for (const id of [...takenOver, ...dropped]) {
  const s = getSessionState(id)
  const ld = s.lastDisconnect ? `${s.lastDisconnect.code} ${s.lastDisconnect.reason}` : 'null'
  const note = reconnecting.has(id) ? ' (the new socket\'s session)' : ''
  console.log(`  ${id}: status ${s.status}, isConnected ${s.isConnected}, lastDisconnect ${ld}, error ${s.error}${note}`)
}

// 4. Shut down: clearAll() ends every socket; then nothing may be left running.
const live = [...getAllSockets().values()]
clearAll()
while (!live.every((s) => s.ws.isClosed)) await sleep(10)
await server.close()
await sleep(20)
// The terminal or pipes of stdout/stderr are the process's own, not the demo's.
const left = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap' && r !== 'PipeWrap')
console.log(`\n[${elapsed()}] clearAll(): ${getSocketCount()} sockets registered, ${live.length} sockets closed, server closed.`)
console.log(`process.getActiveResourcesInfo(): ${left.length ? left.join(', ') : 'nothing left'}${tty ? ' (besides the terminal)' : ' (besides stdio)'}`)
if (left.length) process.exitCode = 1
