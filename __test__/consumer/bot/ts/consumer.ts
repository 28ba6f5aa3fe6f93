// A TypeScript bot using every export of the package, type-checked with
// `tsc --noEmit --strict` against the index.d.ts that the tarball ships. The
// Expect<Equal<...>> lines pin the exact types, so a typing that gets looser
// (an `any`, an optional key, a plain `string` status) fails this file.
import makeWASocket, { useMultiFileAuthState, type WASocket } from '@whiskeysockets/baileys'
import registry, {
  __napiBindingTarget,
  clearAll,
  configure,
  connectCluster,
  createSocketWrapper,
  getAllSessions,
  getAllSockets,
  getSessionState,
  getSocket,
  getSocketCount,
  getStats,
  hasSocket,
  loadSnapshot,
  onStateChange,
  registerSocket,
  saveSnapshot,
  superviseSession,
  unregisterSocket,
  updateSessionState,
  waitForState,
  type LastDisconnect,
  type RegisterOptions,
  type RegistryConfig,
  type RegistryErrorCode,
  type RegistryStats,
  type SavedSession,
  type SessionError,
  type SessionIdentity,
  type SessionState,
  type SessionStateUpdate,
  type SessionStatus,
  type SessionSummary,
  type SnapshotInfo,
  type SocketFaults,
  type SocketWrapperConfig,
  type StateChangeEvent,
  type StateChangeType,
  type StatusCounts,
  type ClaimOptions,
  type Cluster,
  type ClusterEvent,
  type ClusterLease,
  type ClusterNode,
  type ClusterOptions,
  type ClusterPlacement,
  type ClusterStats,
  type MakeSocketContext,
  type SupervisedSession,
  type Supervision,
  type SupervisionBackoff,
  type SupervisionPolicy,
  type SupervisionPolicyReason,
  type SupervisionRule,
  type WaitOptions
} from 'baileys-socket-registry'

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
type Expect<T extends true> = T
/** true when K is a required (not `?:`) key of O. */
type Required_<O, K extends keyof O> = {} extends Pick<O, K> ? false : true

// The Baileys socket type flows through the generics.
export async function start (sessionId: string): Promise<WASocket> {
  const { state, saveCreds } = await useMultiFileAuthState(`auth/${sessionId}`)
  const sock = registerSocket(sessionId, makeWASocket({ auth: state }), { track: true } satisfies RegisterOptions)
  sock.ev.on('creds.update', saveCreds)
  return sock
}

export function lookups (id: string): void {
  const sock = getSocket<WASocket>(id)
  type _socket = Expect<Equal<typeof sock, WASocket | null>>
  if (sock) void sock.sendPresenceUpdate('available')
  // Without a type argument a JS-style call still works (any).
  const untyped = getSocket(id)
  type _untyped = Expect<Equal<typeof untyped, any>>

  const sockets = getAllSockets<WASocket>()
  type _map = Expect<Equal<typeof sockets, Map<string, WASocket>>>
  sockets.forEach((s, sessionId) => {
    type _each = Expect<Equal<[typeof s, typeof sessionId], [WASocket, string]>>
    s.ev.on('connection.update', () => {})
  })

  const count: number = getSocketCount()
  const has: boolean = hasSocket(id)
  const removed: boolean = unregisterSocket(id)
  void [count, has, removed]
  const done: void = clearAll()
  void done
}

export function states (id: string): void {
  const state = getSessionState(id)
  type _state = Expect<Equal<typeof state, (SessionState & Record<string, unknown>) | null>>
  if (!state) return
  const status: SessionStatus | null = state.status
  const error: string | null = state.error
  const created: number = state.createdAt
  type _statusRequired = Expect<Required_<SessionState, 'status'>>
  type _errorRequired = Expect<Required_<SessionState, 'error'>>
  type _meRequired = Expect<Required_<SessionState, 'me'>>
  type _ldRequired = Expect<Required_<SessionState, 'lastDisconnect'>>
  type _status = Expect<Equal<SessionState['status'], SessionStatus | null>>
  type _statuses = Expect<Equal<SessionStatus, 'connecting' | 'qr' | 'open' | 'closed' | 'loggedOut' | 'replaced' | 'restartRequired' | 'leaseLost'>>
  const ld: LastDisconnect | null = state.lastDisconnect
  if (ld) {
    const code: number | null = ld.code
    const reason = ld.reason
    if (reason === 'loggedOut' || reason === 'connectionReplaced' || reason === null) void code
    type _ld = Expect<Equal<[LastDisconnect['message'], LastDisconnect['at']], [string | null, number]>>
  }
  const me: SessionIdentity | null = state.me
  if (me) {
    type _me = Expect<Equal<[SessionIdentity['id'], SessionIdentity['lid']], [string | null, string | null]>>
  }
  void [status, error, created]

  // The bot's own keys: typed where it says so.
  type Extra = { plan: 'free' | 'pro' }
  const mine = getSessionState<Extra>(id)
  if (mine) {
    const plan: 'free' | 'pro' = mine.plan
    void plan
  }
  updateSessionState(id, { isConnected: true, error: null, status: 'open' })
  updateSessionState(id, { error: new Error('boom'), plan: 'pro', tags: ['a'] })
  updateSessionState<Extra>(id, { plan: 'free' })
  const update = { createdAt: Date.now(), status: null } satisfies SessionStateUpdate
  updateSessionState(id, update)

  const sessions = getAllSessions()
  type _sessions = Expect<Equal<typeof sessions, Record<string, SessionState>>>
}

export function stats (): void {
  const s: RegistryStats = getStats()
  const total: number = s.totalSessions
  const rows: SessionSummary[] = s.activeSessions
  const iso: string = rows[0].createdAt
  type _rowStatus = Expect<Equal<SessionSummary['status'], SessionStatus | null>>
  type _rowError = Expect<Equal<SessionSummary['error'], string | null>>
  type _rowRequired = Expect<Required_<SessionSummary, 'error'>>
  const errors: SessionError[] = s.errorSessions
  const connected: string[] = s.connectedSessions
  const disconnected: string[] = s.disconnectedSessions
  const inactive: string[] = s.inactiveSessions
  const counts: StatusCounts = s.byStatus
  const open: number = counts.open + counts.loggedOut + counts.restartRequired + counts.untracked
  const faults: SocketFaults = s.socketFaults
  const lastFault: string | null = faults.last
  const idle: number = s.idleAfterMs
  getAllSockets<WASocket>().forEach((sock, id) => {
    if (connected.includes(id)) void sock.user
  })
  void [total, iso, errors, disconnected, inactive, open, lastFault, idle]
}

export async function lifecycle (id: string): Promise<void> {
  const settings = configure({ idleAfterMs: 60_000 } satisfies RegistryConfig)
  type _settings = Expect<Equal<typeof settings, Required<RegistryConfig>>>
  const byDefault = configure()
  void byDefault

  const off = onStateChange((event: StateChangeEvent) => {
    const type: StateChangeType = event.type
    type _types = Expect<Equal<StateChangeType, 'registered' | 'status' | 'removed' | 'stuck' | 'leaseLost' | 'reconnecting' | 'gaveUp' | 'stopped'>>
    if (event.type === 'leaseLost') void [event.reason, event.token]
    type _current = Expect<Equal<StateChangeEvent['current'], SessionState | null>>
    type _previousRequired = Expect<Required_<StateChangeEvent, 'previous'>>
    const threadId: number = event.threadId
    if (type === 'removed' && event.current === null) void event.previous?.createdAt
    void [event.sessionId, threadId]
  })
  const removed: boolean = off()

  const options: WaitOptions = { timeoutMs: 5000 }
  const open: SessionState = await waitForState(id, 'open', options)
  await waitForState(id, 'loggedOut')
  void [removed, open]

  const info: SnapshotInfo = await saveSnapshot('sessions.json')
  const saved: SavedSession[] = await loadSnapshot(info.path)
  for (const s of saved) {
    const custom: Record<string, unknown> = s.custom
    const status: SessionStatus | null = s.status
    void [custom, status, s.lastDisconnect?.reason, s.me?.lid]
  }
  type _savedRequired = Expect<Required_<SavedSession, 'connectedAt'>>

  try {
    registerSocket('', {})
  } catch (err) {
    const code = (err as { code?: RegistryErrorCode }).code
    if (code === 'ERR_INVALID_SESSION_ID' || code === 'ERR_WAIT_TIMEOUT') void code
  }
}

export async function wrapper (): Promise<void> {
  const { state } = await useMultiFileAuthState('auth/user_1')
  const create = createSocketWrapper(makeWASocket)
  const sock = create({ sessionId: 'user_1', auth: state, printQRInTerminal: false })
  type _wrapped = Expect<Equal<typeof sock, WASocket>>
  const extra: SocketWrapperConfig = { sessionId: 'user_2' }
  void create({ ...extra, auth: state })
}

export const target: 'native' | 'wasm32-wasi' | 'wasm32-wasip1' = __napiBindingTarget
export const sameModule: boolean = registry.getSocket === getSocket

// A patch typed with an interface (no index signature) is accepted too.
interface Patch extends SessionStateUpdate { plan?: 'free' | 'pro' }
export function applyPatches (id: string, p: Patch, u: SessionStateUpdate): void {
  updateSessionState(id, p)
  updateSessionState(id, u)
}

// Several processes on one Redis: claim before registering.
export async function cluster (): Promise<void> {
  const options: ClusterOptions = { url: 'redis://127.0.0.1:6379', nodeId: 'host-a', leaseMs: 15_000 }
  const c: Cluster = await connectCluster(options)
  const nodeId: string = c.nodeId
  const claim: ClaimOptions = { waitMs: 1000, takeover: true }
  const lease: ClusterLease = await c.claim('user_42', claim)
  type _token = Expect<Equal<ClusterLease['token'], string>>
  const { state } = await useMultiFileAuthState('auth/user_42')
  registerSocket(lease.sessionId, makeWASocket({ auth: state }))
  const held: boolean = c.holds('user_42')
  const where: ClusterPlacement | null = await c.whereIs('user_42')
  if (where) {
    const s: SessionState | null = where.state
    const ttl: number = where.leaseTtlMs
    void [s?.status, ttl, where.updatedAt]
  }
  const fleet: ClusterStats = await c.getStats()
  const nodes: ClusterNode[] = fleet.nodes
  const rowNode: string = fleet.activeSessions[0].nodeId
  const counts: StatusCounts = fleet.byStatus
  void [nodes[0].lastSeen, rowNode, counts.leaseLost, fleet.sessions[0].nodeId]
  const off = c.onStateChange((e: ClusterEvent) => {
    if (e.type === 'leaseLost') {
      const reason: 'unreachable' | 'superseded' | 'takeover' = e.reason
      void reason
    } else if (e.type === 'state') {
      void e.state?.isConnected
    } else if (e.type === 'takeoverRequested') {
      const by: string = e.by
      void by
    }
  })
  off()
  try {
    await c.claim('user_43')
  } catch (err) {
    const code = (err as { code?: RegistryErrorCode }).code
    if (code === 'ERR_CLUSTER_HELD' || code === 'ERR_CLUSTER_NOT_HELD') void code
  }
  const released: boolean = await c.release('user_42')
  const closed: void = await c.close()
  void [nodeId, held, released, closed]
}

// Supervision: the registry makes the sockets, by policy.
export async function supervised (id: string): Promise<SupervisedSession> {
  const { state, saveCreds } = await useMultiFileAuthState(`auth/${id}`)
  const backoff: SupervisionBackoff = { baseMs: 1000, factor: 2, maxMs: 60_000, jitter: 'full' }
  const replaced: SupervisionRule = { baseMs: 30_000 }
  const reason: SupervisionPolicyReason = 'connectionReplaced'
  const policy: SupervisionPolicy = { backoff, maxAttempts: Infinity, stableAfterMs: 30_000, reasons: { [reason]: replaced, loggedOut: 'stop' } }
  const handle = superviseSession(id, ({ attempt, lastDisconnect }: MakeSocketContext) => {
    void [attempt, lastDisconnect?.date]
    const sock = makeWASocket({ auth: state })
    sock.ev.on('creds.update', saveCreds)
    return sock
  }, policy)
  const now: Supervision = handle.supervision
  type _state = Expect<Equal<Supervision['state'], 'running' | 'waiting' | 'stopped' | 'gaveUp'>>
  type _next = Expect<Equal<Supervision['nextAttemptAt'], number | null>>
  type _inState = Expect<Equal<SessionState['supervision'], Supervision | null>>
  const off = onStateChange((e: StateChangeEvent) => {
    if (e.type === 'reconnecting') void [e.attempt, e.delayMs, e.reason, e.error]
  })
  off()
  void [now.attempt, handle.sessionId, handle.restart(), handle.stop()]
  // An async makeSocket is fine too.
  return superviseSession(`${id}_2`, async () => makeWASocket({ auth: state }))
}
