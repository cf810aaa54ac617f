// kuryr-lib's external binding scripts, for the vif_types we do not plug ourselves: an executable
// named after the vif_type in bindir ([DEFAULT] bindir, kuryr-lib's default /usr/libexec/kuryr,
// devstack's /usr/local/libexec/kuryr), called exactly as kuryr-lib's veth driver calls it, so the
// scripts written for kuryr-lib (ovs, bridge, tap, midonet, iovisor, vendors' own) keep working:
//   <bindir>/<vif_type> bind   <port_id> <tap> <endpoint_id> <mac> <network_id> <project_id> <details>
//   <bindir>/<vif_type> unbind <port_id> <tap> <endpoint_id> <mac> <details> <network_id>
// <details> is kuryr-lib's lib_utils.string_mappings(vif_details): '"' + str(dict) + '"' (the
// double quotes are part of the argument, no shell strips them), or None for a missing/empty dict.
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { Port } from '../neutron/types.js';
import { DriverError } from '../util/errors.js';

export const DEFAULT_SCRIPT_TIMEOUT_MS = 30_000;
/** kuryr-lib's constants.FALLBACK_VIF_TYPE: what a port without binding:vif_type is run as. */
const FALLBACK_VIF_TYPE = 'unbound';
const KEEP_OUTPUT = 64 << 10;

export class BindingScriptError extends DriverError {}

export interface ScriptOptions {
  /** Directory of the scripts ([DEFAULT] bindir). */
  bindir: string;
  /** Docker's endpoint ID (the scripts' third argument). */
  endpointId: string;
  /** The script is killed (with its children) after this long; default 30 s. */
  timeoutMs?: number;
}

export interface ScriptResult {
  stdout: string;
  stderr: string;
}

type UnbindPort = Pick<
  Port,
  'id' | 'mac_address' | 'network_id' | 'binding:vif_type' | 'binding:vif_details'
>;

/** A vif_type is a file name in bindir, never a path. */
function validVifType(vifType: string): boolean {
  return /^[A-Za-z0-9_.-]+$/.test(vifType) && vifType !== '.' && vifType !== '..';
}

export function scriptPath(bindir: string, vifType: string): string {
  return join(bindir, vifType);
}

/** Whether bindir has a script for vifType (a file; whether it is executable is checked on use). */
export function hasScript(bindir: string, vifType: string): boolean {
  if (!validVifType(vifType)) return false;
  try {
    return statSync(scriptPath(bindir, vifType)).isFile();
  } catch {
    return false;
  }
}

// ---- Python's repr, for vif_details -----------------------------------------------------------

function pyStr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0;
    if (ch === quote || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || (c >= 0x7f && c <= 0xa0)) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out + quote;
}

function pyNumber(n: number): string {
  if (Number.isNaN(n)) return 'nan';
  if (!Number.isFinite(n)) return n > 0 ? 'inf' : '-inf';
  // JSON integers are Python ints (Neutron's vif_details come from JSON).
  if (Number.isInteger(n)) return Math.abs(n) < 1e21 ? String(n) : BigInt(n).toString();
  // Python's float repr: shortest digits (as JS), scientific below 1e-4 and from 1e16 on.
  const [mantissa = '0', exp = '0'] = n.toExponential().split('e');
  const e = Number(exp);
  if (e < -4 || e >= 16) return `${mantissa}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  return String(n);
}

/** Python's repr() of a JSON value: dicts as {'k': v}, True/False/None, single-quoted strings. */
export function pythonRepr(value: unknown): string {
  if (value === null || value === undefined) return 'None';
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (typeof value === 'number') return pyNumber(value);
  if (typeof value === 'string') return pyStr(value);
  if (Array.isArray(value)) return `[${value.map(pythonRepr).join(', ')}]`;
  if (typeof value === 'object') {
    const items = Object.entries(value as Record<string, unknown>).map(
      ([k, v]) => `${pyStr(k)}: ${pythonRepr(v)}`,
    );
    return `{${items.join(', ')}}`;
  }
  return pyStr(String(value));
}

/** kuryr-lib's string_mappings(vif_details): the repr in literal double quotes, or None. */
export function vifDetailsArg(details: Record<string, unknown> | undefined): string {
  if (!details || Object.keys(details).length === 0) return 'None';
  return `"${pythonRepr(details)}"`;
}

// ---- running a script ------------------------------------------------------------------------

function tail(text: string, lines = 10, chars = 1000): string {
  const t = text.trim().split('\n').slice(-lines).join('\n');
  return t.length > chars ? `…${t.slice(-chars)}` : t;
}

function runScript(
  op: 'bind' | 'unbind',
  vifType: string,
  portId: string,
  args: string[],
  opts: ScriptOptions,
): Promise<ScriptResult> {
  const path = scriptPath(opts.bindir, vifType);
  const what = `binding script ${path} (${op} of port ${portId}, binding:vif_type '${vifType}')`;
  if (!hasScript(opts.bindir, vifType)) {
    return Promise.reject(
      new BindingScriptError(
        `binding:vif_type '${vifType}' of port ${portId} is not supported: there is no binding script ${path}. ` +
          `Install kuryr-lib's libexec scripts (or one for '${vifType}') in ${opts.bindir}, ` +
          `or set [DEFAULT] bindir to the directory that has them (devstack: /usr/local/libexec/kuryr)`,
      ),
    );
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_SCRIPT_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    let settled = false;
    const settle = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve({ stdout, stderr });
    };
    // Its own process group, so a timeout kills what the script started too (and a leftover
    // child holding our pipes cannot keep us waiting).
    const child = spawn(path, [op, ...args], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const timer = setTimeout(() => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      settle(
        new BindingScriptError(
          `${what} did not finish within ${timeoutMs / 1000} s and was killed` +
            (stderr.trim() ? `; its stderr: ${tail(stderr)}` : ''),
        ),
      );
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout = (stdout + d).slice(-KEEP_OUTPUT);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-KEEP_OUTPUT);
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      const hint =
        err.code === 'EACCES'
          ? `it is not executable (chmod +x ${path}) or ${opts.bindir} is not readable`
          : err.code === 'ENOENT'
            ? `it vanished or its interpreter (#! line) is missing`
            : err.message;
      settle(new BindingScriptError(`${what} could not be started: ${hint}`));
    });
    child.on('close', (code, signal) => {
      if (code === 0) return settle();
      const how = signal ? `was killed by ${signal}` : `failed with exit code ${code}`;
      const out = tail(stderr) || tail(stdout);
      settle(new BindingScriptError(`${what} ${how}${out ? `: ${out}` : ' (no output)'}`));
    });
  });
}

function projectOf(port: Port): string {
  return port.project_id || (port as Port & { tenant_id?: string }).tenant_id || '';
}

/**
 * `<bindir>/<vif_type> bind <port_id> <tap> <endpoint_id> <mac> <network_id> <project_id> <details>`,
 * as kuryr-lib's veth driver runs it after creating the veth pair.
 */
export function runBindScript(port: Port, tap: string, opts: ScriptOptions): Promise<ScriptResult> {
  const vifType = port['binding:vif_type'] || FALLBACK_VIF_TYPE;
  const args = [
    port.id,
    tap,
    opts.endpointId,
    port.mac_address,
    port.network_id,
    projectOf(port),
    vifDetailsArg(port['binding:vif_details']),
  ];
  return runScript('bind', vifType, port.id, args, opts);
}

/**
 * `<bindir>/<vif_type> unbind <port_id> <tap> <endpoint_id> <mac> <details> <network_id>` (kuryr-lib's
 * argument order, which differs from bind's), before the veth pair is deleted.
 */
export function runUnbindScript(port: UnbindPort, tap: string, opts: ScriptOptions): Promise<ScriptResult> {
  const vifType = port['binding:vif_type'] || FALLBACK_VIF_TYPE;
  const args = [
    port.id,
    tap,
    opts.endpointId,
    port.mac_address,
    vifDetailsArg(port['binding:vif_details']),
    port.network_id,
  ];
  return runScript('unbind', vifType, port.id, args, opts);
}
