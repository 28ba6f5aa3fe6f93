// The same package from a CommonJS TypeScript file (`import = require`).
import registry = require('baileys-socket-registry')

const sock = registry.registerSocket('cjs_ts', { ev: { on () {}, off () {} }, end () {} })
const same: typeof sock | null = registry.getSocket<typeof sock>('cjs_ts')
const status: registry.SessionStatus | null | undefined = registry.getSessionState('cjs_ts')?.status
const stats: registry.RegistryStats = registry.getStats()
export = { same, status, total: stats.totalSessions }
