// The pieces of the upload checksums that need no server: GCS's CRC-32C, and a refused digest
// counting as transient for every driver (the server tests show each driver's refusal end to end).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CHECKSUM_MISMATCH_CODES, crc32cBase64, transientErrors, uploadChecksumsOption } from '../../src/backend/shared.ts';
import { isRetryableError } from '../../src/backend/wrappers/retry.ts';
import { BackendError, InvalidInputError } from '../../src/errors.ts';

describe('upload checksums', () => {
  it('computes CRC-32C as GCS writes it (RFC 3720 vectors, big-endian base64)', () => {
    const hex = (b64: string): string => Buffer.from(b64, 'base64').toString('hex');
    assert.equal(hex(crc32cBase64(new Uint8Array(0))), '00000000');
    assert.equal(hex(crc32cBase64(Buffer.from('123456789'))), 'e3069283');
    assert.equal(hex(crc32cBase64(new Uint8Array(32))), '8a9136aa');
    assert.equal(hex(crc32cBase64(new Uint8Array(32).fill(0xff))), '62a8ab43');
    const ascending = Uint8Array.from({ length: 32 }, (_, i) => i);
    assert.equal(hex(crc32cBase64(ascending)), '46dd794e');
  });

  it('treats a refused digest as transient; the uploadChecksums option is on unless false', () => {
    for (const code of CHECKSUM_MISMATCH_CODES) assert.equal(transientErrors.code(code), true, code);
    assert.equal(transientErrors.code('InvalidDigest'), false, 'a malformed digest header is our mistake, not the wire');
    assert.equal(isRetryableError(new BackendError('save x: BadDigest', { transient: true, status: 400 })), true);
    assert.equal(uploadChecksumsOption(undefined, 'S3'), true);
    assert.equal(uploadChecksumsOption(false, 'S3'), false);
    assert.throws(() => uploadChecksumsOption('no', 'S3'), (e: unknown) => e instanceof InvalidInputError && /uploadChecksums of the S3 backend must be a boolean/.test(e.message));
  });
});
