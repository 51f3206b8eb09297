/**
 * Removes absolute file-system paths from a message meant for a client: a server's directory layout is not
 * a tenant's business. Each path becomes its last component (the file name still helps the user), so
 * "/srv/lori/adapters/math/adapter_config.json is not JSON" reads "adapter_config.json is not JSON".
 */
const ABSOLUTE_PATH = /(?<![\w.~-])(?:[A-Za-z]:)?[\\/](?:[^\s'"`<>|:,;()[\]{}\\/]+[\\/])+([^\s'"`<>|:,;()[\]{}\\/]*)/g;

export function scrubPaths(message: string): string {
  return message.replace(ABSOLUTE_PATH, (_match, last: string) => last || "(directory)");
}
