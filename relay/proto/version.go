package proto

// ALPN is the TLS application protocol both ends offer; a peer speaking
// anything else fails the handshake with no_application_protocol.
const ALPN = "relay/1"

// Version is the protocol version carried in every Request. relay refuses a
// request of another version with VERSION.
const Version = 1
