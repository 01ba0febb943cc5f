/**
 * A typed client for agentstream gateways: start a run, stream its events (resuming by itself,
 * checking the completeness proof at the end), cancel it. React: `@agentstream/client/react`.
 */

export * from "./generated/schemas.js";
export {
  AgentstreamError,
  ApiError,
  CompletenessError,
  StreamError,
  type ErrorCode,
} from "./errors.js";
export type { Gateway, GatewayOptions } from "./gateway.js";
export { CompletenessTally, type ProofState } from "./proof.js";
export {
  followRun,
  initialRunState,
  runReducer,
  type RunAction,
  type RunPhase,
  type RunState,
  type ToolActivity,
} from "./run-state.js";
export { cancelRun, getRun, startRun, type StartOptions } from "./runs.js";
export { SseParser, type SseMessage } from "./sse.js";
export {
  RunStream,
  streamRun,
  type Checkpoint,
  type ProofStatus,
  type ReconnectInfo,
  type StreamedEvent,
  type StreamOptions,
} from "./stream.js";
