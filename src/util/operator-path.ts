import { resolve } from 'node:path';

/**
 * A path the operator typed, absolute: `npm run` starts a script in the package's directory,
 * but relative paths are meant from where the command was typed (npm says where: INIT_CWD).
 */
export function operatorPath(path: string, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.INIT_CWD ?? process.cwd(), path);
}
