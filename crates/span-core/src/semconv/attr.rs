//! Attribute names, in one place: every span-core module that sets an
//! attribute and every consumer that names one uses these constants, so a
//! key is spelled once. Values follow the OpenTelemetry semantic
//! conventions; `zt.*` keys are zt-trace's own.

// Resource (one traced process).
pub const SERVICE_NAME: &str = "service.name";
pub const PROCESS_PID: &str = "process.pid";
pub const PROCESS_EXECUTABLE_NAME: &str = "process.executable.name";
pub const PROCESS_EXECUTABLE_PATH: &str = "process.executable.path";
pub const PROCESS_COMMAND: &str = "process.command";
pub const PROCESS_RUNTIME_NAME: &str = "process.runtime.name";
pub const PROCESS_RUNTIME_VERSION: &str = "process.runtime.version";
pub const HOST_NAME: &str = "host.name";

// Network.
pub const NETWORK_TRANSPORT: &str = "network.transport";
pub const NETWORK_TYPE: &str = "network.type";
pub const NETWORK_PROTOCOL_NAME: &str = "network.protocol.name";
pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
pub const NETWORK_PEER_ADDRESS: &str = "network.peer.address";
pub const NETWORK_PEER_PORT: &str = "network.peer.port";
pub const NETWORK_LOCAL_ADDRESS: &str = "network.local.address";
pub const NETWORK_LOCAL_PORT: &str = "network.local.port";
pub const SERVER_ADDRESS: &str = "server.address";
pub const SERVER_PORT: &str = "server.port";
pub const CLIENT_ADDRESS: &str = "client.address";
pub const CLIENT_PORT: &str = "client.port";
pub const PEER_SERVICE: &str = "peer.service";
pub const THREAD_ID: &str = "thread.id";
pub const ERROR_TYPE: &str = "error.type";

// HTTP.
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
pub const HTTP_REQUEST_METHOD_ORIGINAL: &str = "http.request.method_original";
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
pub const HTTP_ROUTE: &str = "http.route";
pub const HTTP_REQUEST_HEADER_X_REQUEST_ID: &str = "http.request.header.x-request-id";
pub const URL_SCHEME: &str = "url.scheme";
pub const URL_PATH: &str = "url.path";
pub const URL_QUERY: &str = "url.query";
pub const URL_FULL: &str = "url.full";
pub const URL_TEMPLATE: &str = "url.template";
pub const USER_AGENT_ORIGINAL: &str = "user_agent.original";

// RPC (gRPC).
pub const RPC_SYSTEM: &str = "rpc.system";
pub const RPC_SERVICE: &str = "rpc.service";
pub const RPC_METHOD: &str = "rpc.method";
pub const RPC_GRPC_STATUS_CODE: &str = "rpc.grpc.status_code";
pub const RPC_MESSAGE_SENT_COUNT: &str = "rpc.message.sent_count";
pub const RPC_MESSAGE_RECEIVED_COUNT: &str = "rpc.message.received_count";

// Databases and caches.
pub const DB_SYSTEM: &str = "db.system";
pub const DB_SYSTEM_NAME: &str = "db.system.name";
pub const DB_QUERY_TEXT: &str = "db.query.text";
pub const DB_OPERATION_NAME: &str = "db.operation.name";
pub const DB_COLLECTION_NAME: &str = "db.collection.name";
pub const DB_NAMESPACE: &str = "db.namespace";
pub const DB_RESPONSE_RETURNED_ROWS: &str = "db.response.returned_rows";
pub const DB_RESPONSE_STATUS_CODE: &str = "db.response.status_code";

// zt-trace's own.
/// How the span was linked (`LinkReason::as_str`).
pub const ZT_LINK_REASON: &str = "zt.link.reason";
/// Why a span ended without its response (`IncompleteReason::as_str`).
pub const ZT_INCOMPLETE: &str = "zt.incomplete";
/// What part of an HTTP request the server was sent invalid (`method`,
/// `target`, `version`, `header`), escaped values kept.
pub const ZT_HTTP_INVALID: &str = "zt.http.invalid";
/// On a span link: `inferred` (evidence too weak to be a parent edge).
pub const ZT_LINK: &str = "zt.link";
/// On a span link: what the inference rests on.
pub const ZT_LINK_EVIDENCE: &str = "zt.link.evidence";
/// Request/response fields that could not be decoded (HTTP/2 joined
/// mid-connection).
pub const ZT_UNDECODED: &str = "zt.undecoded";
pub const ZT_DB_STATEMENT_ID: &str = "zt.db.statement_id";
/// On the root span of a kept trace (when sampling is on): why it was kept
/// (`head`, `parent`, `error`, `slow`, `match:<key>`).
pub const ZT_SAMPLING_REASON: &str = "zt.sampling.reason";
