// The fault suite's table: each scenario appends a row; zz-table.test.ts prints them all at the end
// (test files run as separate processes, in name order, so rows go through a file).
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Row {
  scenario: string;
  result: string;
  recover: string;
  leaked: number | '–';
}

const FILE = process.env.KURYR_FAULTS_REPORT ?? join(tmpdir(), 'kuryr-faults-report.jsonl');

export function addRow(row: Row): void {
  appendFileSync(FILE, `${JSON.stringify(row)}\n`);
}

export function readRows(): Row[] {
  if (!existsSync(FILE)) return [];
  return readFileSync(FILE, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Row);
}

export function table(rows: Row[]): string {
  const lines = rows.map((r) => `| ${r.scenario} | ${r.result} | ${r.recover} | ${r.leaked} |`);
  return ['| scenario | result | time to recover | resources leaked |', '|---|---|---|---|', ...lines].join(
    '\n',
  );
}
