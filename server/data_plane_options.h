// Options of the UCX data plane that the daemon's configuration names without depending on
// UCX headers (builds without UCX still parse the flags).
#ifndef CLUSTERKV_SERVER_DATA_PLANE_OPTIONS_H_
#define CLUSTERKV_SERVER_DATA_PLANE_OPTIONS_H_

namespace clusterkv::server {

// When endpoints to clients use UCP_ERR_HANDLING_MODE_PEER, which detects a vanished client
// and releases its session. UCX 1.13 then puts over tcp only (~1 GB/s here); without it, puts
// use shared memory at memcpy speed and a vanished client's session is released when a put or
// reply to it fails or times out. kRemoteOnly uses peer error handling for clients that reached
// the daemon over TCP (where a peer vanishing mid-wireup could otherwise abort the daemon) and
// not for same-host clients on the Unix socket.
enum class UcxPeerErrors { kAlways, kNever, kRemoteOnly };

}  // namespace clusterkv::server

#endif  // CLUSTERKV_SERVER_DATA_PLANE_OPTIONS_H_
