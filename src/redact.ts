// Masking of credentials in error messages, shared by the log summaries (observe.ts) and
// StowageError.toJSON (errors.ts); a module of its own so that neither imports the other.

/**
 * Masks what commonly leaks into third-party error messages: a password in a URL
 * ("https://user:***@host"), signed-URL and SAS query parameters, and Authorization headers.
 */
export function redactSecrets(text: string): string {
  return text
    .replace(/(\/\/[^/:\s]*?):[^/\s]*@/g, '$1:***@')
    .replace(/([?&](?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|sig|Signature|token|access_token)=)[^&\s"']*/gi, '$1***')
    .replace(/(authorization["']?\s*[:=]\s*["']?)[^"'\s,}]+(\s+[^"'\s,}]+)?/gi, '$1***');
}
