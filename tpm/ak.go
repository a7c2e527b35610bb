package tpm

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// KeyAlg is an attestation key's algorithm.
type KeyAlg string

// The attestation key algorithms.
const (
	// KeyECC is an ECC NIST P-256 key signing with ECDSA and SHA-256.
	KeyECC KeyAlg = "ecc"
	// KeyRSA is an RSA 2048 key signing with RSASSA-PKCS1-v1_5 and SHA-256.
	KeyRSA KeyAlg = "rsa"
)

// Hierarchy is the hierarchy whose primary seed an attestation key
// derives from.
type Hierarchy string

// The hierarchies an attestation key can live under.
const (
	// Endorsement is the endorsement hierarchy, the usual home of an AK:
	// its seed changes only when the TPM is cleared by its maker's means.
	Endorsement Hierarchy = "endorsement"
	// Owner is the storage (owner) hierarchy; TPM2_Clear changes its seed.
	Owner Hierarchy = "owner"
)

// AKOptions chooses an attestation key. The zero value is an ECC P-256
// key under the endorsement hierarchy, not persisted.
type AKOptions struct {
	// Alg is the key's algorithm; "" means KeyECC.
	Alg KeyAlg
	// Hierarchy is the key's hierarchy; "" means Endorsement.
	Hierarchy Hierarchy
}

// AK is an attestation key loaded in a TPM: a restricted signing key, so
// the TPM signs with it only data that the TPM itself produced (quotes and
// other attestation structures), never caller-made bytes that could
// imitate them.
type AK struct {
	t          *TPM
	handle     tpm2.TPMHandle
	name       tpm2.TPM2BName
	persistent bool
	public     tpm2.TPMTPublic
	wire       []byte // TPM2B_PUBLIC
}

// akTemplate returns the public template of an attestation key: a
// primary, restricted signing key with the attributes fixedTPM,
// fixedParent, sensitiveDataOrigin and userWithAuth (empty password), of
// the same shape tpm2-tools' tpm2_createak makes. The unique field is
// empty, so the same template under the same seed gives the same key: the
// key can be re-created any time instead of being stored.
func akTemplate(alg KeyAlg) (tpm2.TPMTPublic, error) {
	attrs := tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		Restricted:          true,
		SignEncrypt:         true,
	}
	switch alg {
	case KeyECC, "":
		return tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgECC,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
				Scheme: tpm2.TPMTECCScheme{
					Scheme: tpm2.TPMAlgECDSA,
					Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA,
						&tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
				},
				CurveID: tpm2.TPMECCNistP256,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
		}, nil
	case KeyRSA:
		return tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgRSA,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				Scheme: tpm2.TPMTRSAScheme{
					Scheme: tpm2.TPMAlgRSASSA,
					Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA,
						&tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
				},
				KeyBits: 2048,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
		}, nil
	}
	return tpm2.TPMTPublic{}, fmt.Errorf("unknown attestation key algorithm %q (want ecc or rsa)",
		alg)
}

// CreateAK creates (or re-creates: it is the same key each time) the
// attestation key that opts describes, as a primary key, and loads it.
// Close flushes it from the TPM.
func (t *TPM) CreateAK(opts AKOptions) (*AK, error) {
	tmpl, err := akTemplate(opts.Alg)
	if err != nil {
		return nil, err
	}
	var parent tpm2.TPMHandle
	switch opts.Hierarchy {
	case Endorsement, "":
		parent = tpm2.TPMRHEndorsement
	case Owner:
		parent = tpm2.TPMRHOwner
	default:
		return nil, fmt.Errorf("unknown hierarchy %q (want endorsement or owner)",
			opts.Hierarchy)
	}

	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: parent, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tmpl),
	}.Execute(t.ch.with(keyTimeout))
	if err != nil {
		return nil, fmt.Errorf("create attestation key on %s: %w", t.addr, err)
	}

	ak, err := newAK(t, rsp.ObjectHandle, rsp.Name, rsp.OutPublic, false)
	if err != nil {
		_ = flush(t, rsp.ObjectHandle)
		return nil, err
	}
	return ak, nil
}

// LoadAK uses an attestation key persisted at handle (0x81000000 to
// 0x81FFFFFF). It must be a restricted signing key.
func (t *TPM) LoadAK(handle uint32) (*AK, error) {
	if handle>>24 != 0x81 {
		return nil, fmt.Errorf("handle %#x is not a persistent handle (0x81xxxxxx)", handle)
	}
	rsp, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(handle)}.Execute(t.ch.with(0))
	if err != nil {
		return nil, fmt.Errorf("read attestation key %#x on %s: %w", handle, t.addr, err)
	}
	return newAK(t, tpm2.TPMHandle(handle), rsp.Name, rsp.OutPublic, true)
}

// newAK checks a loaded key's public area and wraps it.
func newAK(t *TPM, h tpm2.TPMHandle, name tpm2.TPM2BName, pub tpm2.TPM2BPublic,
	persistent bool) (*AK, error) {
	public, err := pub.Contents()
	if err != nil {
		return nil, fmt.Errorf("attestation key %#x: public area: %w", uint32(h), err)
	}
	if err := checkAKPublic(public); err != nil {
		return nil, fmt.Errorf("key %#x: %w", uint32(h), err)
	}
	return &AK{
		t: t, handle: h, name: name, persistent: persistent,
		public: *public, wire: tpm2.Marshal(pub),
	}, nil
}

// checkAKPublic insists on a restricted signing key: an unrestricted one
// signs any bytes, so its "quotes" prove nothing.
func checkAKPublic(p *tpm2.TPMTPublic) error {
	if !p.ObjectAttributes.Restricted || !p.ObjectAttributes.SignEncrypt ||
		p.ObjectAttributes.Decrypt {
		return fmt.Errorf("%w: not a restricted signing key", ErrAKNotRestricted)
	}
	return nil
}

// Persist makes a transient attestation key persistent at handle
// (0x81000000 to 0x81FFFFFF) under the owner hierarchy's authorization
// (empty password); the AK then refers to the persistent copy.
func (ak *AK) Persist(handle uint32) error {
	if ak.persistent {
		return fmt.Errorf("attestation key is already persistent at %#x", uint32(ak.handle))
	}
	if handle>>24 != 0x81 {
		return fmt.Errorf("handle %#x is not a persistent handle (0x81xxxxxx)", handle)
	}
	_, err := tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		ObjectHandle:     tpm2.NamedHandle{Handle: ak.handle, Name: ak.name},
		PersistentHandle: tpm2.TPMHandle(handle),
	}.Execute(ak.t.ch.with(0))
	if err != nil {
		return fmt.Errorf("persist attestation key at %#x on %s: %w", handle, ak.t.addr, err)
	}

	_ = flush(ak.t, ak.handle)
	ak.handle = tpm2.TPMHandle(handle)
	ak.persistent = true
	return nil
}

// Unpersist removes a persistent attestation key from the TPM's
// non-volatile memory.
func (ak *AK) Unpersist() error {
	if !ak.persistent {
		return fmt.Errorf("attestation key is not persistent")
	}
	_, err := tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		ObjectHandle:     tpm2.NamedHandle{Handle: ak.handle, Name: ak.name},
		PersistentHandle: ak.handle,
	}.Execute(ak.t.ch.with(0))
	if err != nil {
		return fmt.Errorf("evict attestation key %#x on %s: %w", uint32(ak.handle), ak.t.addr,
			err)
	}
	ak.persistent = false
	ak.handle = 0
	return nil
}

// Close flushes a transient key from the TPM; a persistent key stays.
func (ak *AK) Close() error {
	if ak.persistent || ak.handle == 0 {
		return nil
	}
	err := flush(ak.t, ak.handle)
	ak.handle = 0
	return err
}

// flush unloads a transient object.
func flush(t *TPM, h tpm2.TPMHandle) error {
	_, err := tpm2.FlushContext{FlushHandle: h}.Execute(t.ch.with(0))
	if err != nil {
		return fmt.Errorf("flush %#x on %s: %w", uint32(h), t.addr, err)
	}
	return nil
}

// Handle returns the key's handle in the TPM.
func (ak *AK) Handle() uint32 { return uint32(ak.handle) }

// PublicWire returns the key's public area in the TPM's wire format: a
// TPM2B_PUBLIC (big-endian size, then TPMT_PUBLIC), as tpm2-tools writes
// "tss" public files.
func (ak *AK) PublicWire() []byte { return append([]byte(nil), ak.wire...) }

// PublicKey returns the key as an *ecdsa.PublicKey or *rsa.PublicKey.
func (ak *AK) PublicKey() (crypto.PublicKey, error) {
	return tpm2.Pub(ak.public)
}

// PublicPEM returns the key as a PEM "PUBLIC KEY" block (PKIX).
func (ak *AK) PublicPEM() ([]byte, error) {
	return PublicPEM(ak.wire)
}

// PublicPEM converts a TPM2B_PUBLIC to a PEM "PUBLIC KEY" block.
func PublicPEM(wire []byte) ([]byte, error) {
	pub, err := parsePublic(wire)
	if err != nil {
		return nil, err
	}
	key, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// parsePublic parses a TPM2B_PUBLIC that must be exactly wire's length.
func parsePublic(wire []byte) (*tpm2.TPMTPublic, error) {
	if len(wire) < 2 || int(wire[0])<<8|int(wire[1]) != len(wire)-2 {
		return nil, fmt.Errorf("%w: ak public: size field does not match %d bytes",
			ErrQuoteFormat, len(wire))
	}
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](wire[2:])
	if err != nil {
		return nil, fmt.Errorf("%w: ak public: %w", ErrQuoteFormat, err)
	}
	return pub, nil
}
