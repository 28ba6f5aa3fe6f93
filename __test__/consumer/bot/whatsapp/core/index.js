// The bot's barrel file. It used to say `export { ... } from './socket-factory.js'`;
// the migration is this one line pointing at the package instead.
export {
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
} from 'baileys-socket-registry'
