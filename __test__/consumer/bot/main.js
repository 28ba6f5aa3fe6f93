// The bot's entry point, as a user of the package writes it: sessions made with
// createBaileysSocket(authState, sessionId), everything else through the barrel
// whatsapp/core/index.js. Run by __test__/consumer.spec.mjs against a loopback
// WhatsApp server (WA_URL). It checks what a bot relies on, prints one line
// `RESULT <json>` and exits by itself once the sockets are ended: a handle left
// open would keep it alive, and the spec would see a timeout.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import makeWASocket, { useMultiFileAuthState } from '@whiskeysockets/baileys'
import registry, { __napiBindingTarget } from 'baileys-socket-registry'
import { createBaileysSocket, serverModes, socketConfig } from './config/baileys.js'
import {
  registerSocket,
  getSocket,
  getAllSockets,
  getSocketCount,
  hasSocket,
  unregisterSocket,
  updateSessionState,
  getSessionState,
  getAllSessions,
  getStats,
  createSocketWrapper,
  clearAll,
  configure,
  onStateChange,
  waitForState,
  saveSnapshot,
  loadSnapshot
} from './whatsapp/core/index.js'

const N = Number(process.env.BOT_SESSIONS ?? 10)
const TIMEOUT = { timeoutMs: 15000 }
const checks = []
const check = (name, ok, detail) => checks.push({ name, ok: Boolean(ok), ...(ok ? {} : { detail }) })
const sameSet = (a, b) => a.length === b.length && [...a].sort().join() === [...b].sort().join()
const authDir = mkdtempSync(join(tmpdir(), 'consumer-bot-auth-'))
process.on('exit', () => rmSync(authDir, { recursive: true, force: true }))
let phoneSeq = 0

async function authStateFor (sessionId, { paired }) {
  const { state, saveCreds } = await useMultiFileAuthState(join(authDir, sessionId))
  if (paired) {
    // What a paired device's creds hold (the loopback server logs it in).
    state.creds.me = { id: `1555${String(++phoneSeq).padStart(7, '0')}:1@s.whatsapp.net`, name: 'Bot' }
    state.creds.registered = true
  }
  return { state, saveCreds }
}

async function startSession (sessionId, { paired = true, mode = 'open' } = {}) {
  serverModes.set(sessionId, mode)
  const { state, saveCreds } = await authStateFor(sessionId, { paired })
  const sock = createBaileysSocket(state, sessionId)
  sock.ev.on('creds.update', saveCreds)
  return sock
}

const events = []
const unsubscribe = onStateChange((event) => events.push(event))
const settings = configure({ stuckAfterMs: 60000 })
check('configure returns every setting', settings.stuckAfterMs === 60000 && settings.idleAfterMs > 0, settings)
check('loaded the native binary', __napiBindingTarget === 'native', __napiBindingTarget)
check('default import is the same module', registry.getSocket === getSocket)

// 1. N paired sessions that log in, one waiting for a QR scan, one logged out (401).
const ids = Array.from({ length: N }, (_, i) => `user_${i + 1}`)
const sockets = new Map()
for (const id of ids) sockets.set(id, await startSession(id))
await startSession('user_qr', { paired: false, mode: 'qr' })
await startSession('user_401', { mode: 'fail401' })
await Promise.all([
  ...ids.map((id) => waitForState(id, 'open', TIMEOUT)),
  waitForState('user_qr', 'qr', TIMEOUT),
  waitForState('user_401', 'loggedOut', TIMEOUT)
])

// 2. The four checks a user of socket-factory.js runs.
check('getSocketCount', getSocketCount() === N + 2, getSocketCount())
check('getSocket returns each session its own socket', ids.every((id) => getSocket(id) === sockets.get(id)))
const all = getAllSockets()
let seen = 0
all.forEach((sock, id) => {
  seen++
  if (sock !== getSocket(id) || !hasSocket(id)) check(`getAllSockets entry ${id}`, false)
})
check('getAllSockets().forEach((sock, id) => ...)', all instanceof Map && seen === N + 2, seen)
all.clear()
check('getAllSockets is a copy', getSocketCount() === N + 2)
const stats = getStats()
check('getStats().totalSessions', stats.totalSessions === N + 2, stats.totalSessions)
check('getStats().connectedSessions', sameSet(stats.connectedSessions, ids), stats.connectedSessions)
check('getStats().disconnectedSessions', sameSet(stats.disconnectedSessions, ['user_qr', 'user_401']), stats.disconnectedSessions)
check('getStats().errorSessions', stats.errorSessions.length === 1 && stats.errorSessions[0].sessionId === 'user_401' && stats.errorSessions[0].error.length > 0, stats.errorSessions)
check('getStats().byStatus', stats.byStatus.open === N && stats.byStatus.qr === 1 && stats.byStatus.loggedOut === 1, stats.byStatus)
check('getStats().activeSessions', stats.activeSessions.length === N + 2 &&
  stats.activeSessions.every((s) => !Number.isNaN(Date.parse(s.createdAt)) && typeof s.isConnected === 'boolean' && 'error' in s && 'status' in s), stats.activeSessions[0])

// 3. Session state.
const s1 = getSessionState('user_1')
check('state of an open session', s1.isConnected === true && s1.status === 'open' && s1.error === null && s1.me?.id?.endsWith('@s.whatsapp.net') && s1.createdAt <= s1.lastActivity, s1)
const s401 = getSessionState('user_401')
check('state of a logged-out session', s401.status === 'loggedOut' && s401.lastDisconnect?.code === 401 && s401.lastDisconnect?.reason === 'loggedOut', s401)
check('state of a QR session', getSessionState('user_qr').hasQr === true)
updateSessionState('user_1', { plan: 'pro', tags: ['a', 'b'] })
check('updateSessionState keeps the bot\'s keys', getSessionState('user_1').plan === 'pro' && getAllSessions().user_1.tags[1] === 'b')
check('unknown ids', getSocket('nobody') === null && getSessionState('nobody') === null && hasSocket('nobody') === false && unregisterSocket('nobody') === false)
try {
  registerSocket('', {})
  check('bad id throws', false)
} catch (err) {
  check('bad id throws a TypeError with a code', err instanceof TypeError && err.code === 'ERR_INVALID_SESSION_ID', err.code)
}

// 4. createSocketWrapper, as socket-factory.js offered it.
const { state: wrappedState } = await authStateFor('wrapped_1', { paired: true })
const wrapped = createSocketWrapper(makeWASocket)({ ...socketConfig(wrappedState, 'wrapped_1'), sessionId: 'wrapped_1' })
await waitForState('wrapped_1', 'open', TIMEOUT)
check('createSocketWrapper registers and tags the socket', getSocket('wrapped_1') === wrapped && wrapped._sessionId === 'wrapped_1')

// 5. Replacing a session's socket ends the old one.
const old = getSocket('user_2')
const fresh = await startSession('user_2')
await waitForState('user_2', 'open', TIMEOUT)
check('replace: the new socket is registered', getSocket('user_2') === fresh && fresh !== old)
for (let i = 0; i < 200 && !old.ws.isClosed; i++) await new Promise((resolve) => setTimeout(resolve, 10))
check('replace: the old socket was ended', old.ws.isClosed)

// 6. Unregister, snapshots, events.
check('unregisterSocket', unregisterSocket('user_1') === true && !hasSocket('user_1') && getSessionState('user_1') === null)
const snapshotPath = join(authDir, 'sessions.json')
const info = await saveSnapshot(snapshotPath)
const saved = await loadSnapshot(snapshotPath)
check('saveSnapshot / loadSnapshot', info.sessions === getSocketCount() && saved.length === info.sessions &&
  saved.find((s) => s.sessionId === 'user_401')?.lastDisconnect?.code === 401, { info, saved: saved.length })
await new Promise((resolve) => setTimeout(resolve, 50)) // listeners run after the change
const types = new Set(events.map((e) => e.type))
check('onStateChange events', types.has('registered') && types.has('status') && types.has('removed') &&
  events.some((e) => e.sessionId === 'user_3' && e.current?.status === 'open'), [...types])
check('unsubscribe', unsubscribe() === true)

// 7. Shut down: clearAll ends every socket; the process must then exit by itself.
const live = [...getAllSockets().values()]
clearAll()
check('clearAll', getSocketCount() === 0 && getStats().totalSessions === 0)
for (let i = 0; i < 300 && !live.every((s) => s.ws.isClosed); i++) await new Promise((resolve) => setTimeout(resolve, 10))
check('every socket closed', live.every((s) => s.ws.isClosed))

const failed = checks.filter((c) => !c.ok)
console.log(`RESULT ${JSON.stringify({ sessions: N + 3, checks: checks.length, failed })}`)
process.exitCode = failed.length ? 1 : 0
