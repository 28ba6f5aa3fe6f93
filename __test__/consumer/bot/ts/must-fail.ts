// This file must NOT type-check: each line marked `// error:` misuses the API,
// and __test__/consumer.spec.mjs requires tsc to report an error on exactly
// those lines (and no other), so every one of them is proven to be caught.
import { type WASocket } from '@whiskeysockets/baileys'
import {
  configure,
  connectCluster,
  createSocketWrapper,
  getAllSockets,
  getSessionState,
  getSocket,
  getStats,
  loadSnapshot,
  onStateChange,
  registerSocket,
  saveSnapshot,
  superviseSession,
  unregisterSocket,
  updateSessionState,
  waitForState,
  type Cluster,
  type RegistryErrorCode,
  type SessionState
} from 'baileys-socket-registry'

declare const sock: WASocket

registerSocket(42, sock) // error: the session id is a string
registerSocket('user_1', 'not a socket') // error: the socket is an object
registerSocket('user_1', sock, { track: 'yes' }) // error: options.track is a boolean
getSocket() // error: the session id is required
const mustExist: WASocket = getSocket<WASocket>('user_1') // error: the socket may be null
getAllSockets<WASocket>().forEach((s: string, id) => void [s, id]) // error: the map holds sockets
unregisterSocket(['user_1']) // error: one id, not a list
updateSessionState('user_1', 'connected') // error: updates is an object
updateSessionState('user_1', { isConnected: 'yes' }) // error: isConnected is a boolean
updateSessionState('user_1', { status: 'online' }) // error: not a SessionStatus
updateSessionState('user_1', { connects: 3 }) // error: a key only the registry sets
const created: number = getSessionState('user_1').createdAt // error: the state may be null
const state = getSessionState('user_1') as SessionState
if (state.status === 'online') void state // error: 'online' is not a status
const optionalError: string = state.error // error: error is string | null
const when: Date = getStats().activeSessions[0].createdAt // error: an ISO string, not a Date
const open: string = getStats().byStatus.open // error: a count
waitForState('user_1', 'opened') // error: not a SessionStatus
waitForState('user_1', 'open', { timeoutMs: '5s' }) // error: timeoutMs is a number
configure({ idleAfterMs: '10m' }) // error: idleAfterMs is a number
onStateChange((event) => event.type === 'added') // error: not a StateChangeType
onStateChange('listener') // error: the listener is a function
createSocketWrapper('makeWASocket') // error: makeWASocket is a function
saveSnapshot(undefined) // error: the path is a string
loadSnapshot('sessions.json').then((list) => list[0].sessionId.toFixed()) // error: the id is a string
const code: RegistryErrorCode = 'ERR_NOPE' // error: not an error code
superviseSession('user_1', () => 'not a socket') // error: makeSocket gives a socket
superviseSession('user_1', () => sock, { maxAttempt: 3 }) // error: no such policy key
superviseSession('user_1', () => sock, { reasons: { loggedOut: 'retry' } }) // error: a rule is now, backoff, stop or parameters
superviseSession('user_1', () => sock).supervision.state === 'done' // error: not a supervision state
connectCluster({ nodeId: 'a' }) // error: the url is required
connectCluster({ url: 'redis://127.0.0.1', leaseMs: '15s' }) // error: leaseMs is a number
declare const cluster: Cluster
cluster.claim('user_1', { takeover: 'yes' }) // error: takeover is a boolean
cluster.claim('user_1').then((lease) => lease.token.toFixed()) // error: the token is a decimal string
const holds: Promise<boolean> = cluster.holds('user_1') // error: holds is synchronous
cluster.onStateChange((e) => e.type === 'lost') // error: not a cluster event type
void [mustExist, created, optionalError, when, open, code, holds]
