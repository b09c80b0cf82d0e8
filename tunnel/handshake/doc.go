// Package handshake reads who sent a WireGuard handshake initiation.
//
// An initiation (message type 1, 148 bytes) carries the initiator's static
// public key encrypted under the Noise IK pattern
// (Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s, WireGuard whitepaper §5.4.2):
// anyone holding the responder's private key can decrypt it from the
// cleartext ephemeral key, and can check that the sender holds the
// matching private key by opening the timestamp, which is encrypted under
// a key only the two static keys give. A gateway uses it to name, in its
// logs, the key of a stranger whose handshake WireGuard refused;
// wireguard-go drops that key with the message.
//
// The preshared key is mixed in only from the responder's reply on
// (psk2), so an initiation reads the same with or without one.
package handshake
