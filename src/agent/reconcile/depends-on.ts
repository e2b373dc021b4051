/**
 * `config.kubernetes.io/depends-on`: the annotation cli-utils (and so GitLab's agent) reads to
 * apply an object only after the objects it names are current. This module is pure: it parses the
 * annotation and splits a commit's objects into waves (wave 0 depends on nothing, wave n only on
 * earlier waves); the engine applies a wave and waits for it before the next.
 *
 * The reference format is cli-utils' (pkg/object/dependson), so manifests written for GitLab work
 * unchanged: `<group>/namespaces/<namespace>/<kind>/<name>` for a namespaced object,
 * `<group>/<kind>/<name>` for a cluster-scoped one, the core group empty (`/namespaces/ns/ConfigMap/cm`),
 * several references separated by commas. As in cli-utils (ExternalDependencyError), a reference
 * must name an object of the same commit: an object this agent does not apply has no health it follows.
 *
 * Objects that cannot be ordered are left out of the waves, each with a Problem naming what to fix:
 * an invalid annotation, a reference to no object of the commit, a cycle (the cycle is named), or a
 * dependency on an object left out for one of those reasons. Linear in objects plus references.
 */
import type { Problem } from '../../common/errors.js';
import { ProblemCode } from '../../protocol/problems.js';
import type { ResolvedObject } from './types.js';

export const DEPENDS_ON_ANNOTATION = 'config.kubernetes.io/depends-on';
/** At most this many references in one annotation: a bound on the work one object can ask for. */
export const MAX_DEPENDS_ON_REFS = 100;
/** At most this many bytes (UTF-8) in one annotation value. */
export const MAX_DEPENDS_ON_BYTES = 8 * 1024;
/** A cycle longer than this is shown by its first objects and a count, so messages stay readable. */
const MAX_CYCLE_SHOWN = 10;
/** At most this many unknown references are quoted in one message. */
const MAX_REFS_SHOWN = 5;

/** One object a depends-on annotation names; `namespace` is absent for a cluster-scoped object. */
export interface DependencyRef {
  /** API group, `''` for the core group. */
  group: string;
  kind: string;
  namespace?: string;
  name: string;
}

/** Field values cannot be empty or hold `/`, `,` or whitespace (no Kubernetes name or kind can). */
const FIELD = /^[^\s/,]+$/;

/** A reference in the annotation's own format, for messages that tell people what to write. */
export function formatDependencyRef(ref: DependencyRef): string {
  return ref.namespace === undefined
    ? `${ref.group}/${ref.kind}/${ref.name}`
    : `${ref.group}/namespaces/${ref.namespace}/${ref.kind}/${ref.name}`;
}

function parseRef(text: string): DependencyRef | string {
  const fields = text.split('/');
  if (fields.length !== 3 && fields.length !== 5) {
    return `"${text}" has ${fields.length} field${fields.length === 1 ? '' : 's'}; write <group>/namespaces/<namespace>/<kind>/<name> or <group>/<kind>/<name>`;
  }
  if (fields.length === 5 && fields[1] !== 'namespaces') {
    return `"${text}": the second of five fields must be "namespaces"`;
  }
  const [group, ...rest] = fields.length === 3 ? fields : [fields[0], fields[2], fields[3], fields[4]];
  if (group !== '' && !FIELD.test(group)) return `"${text}": the group "${group}" is not a valid API group`;
  for (const field of rest)
    if (!FIELD.test(field)) return `"${text}": namespace, kind and name must be non-empty, without spaces`;
  return fields.length === 3
    ? { group, kind: rest[0], name: rest[1] }
    : { group, namespace: rest[0], kind: rest[1], name: rest[2] };
}

/**
 * Parses an annotation value: comma-separated references, whitespace around each tolerated,
 * repeated references kept once. An empty value, an empty reference (`a,,b`) or more than the
 * bounds is an error, as is any reference that is not one of the two shapes.
 */
export function parseDependsOn(value: string): { refs: DependencyRef[] } | { error: string } {
  if (value.length > MAX_DEPENDS_ON_BYTES || Buffer.byteLength(value, 'utf8') > MAX_DEPENDS_ON_BYTES) {
    return { error: `the value is longer than ${MAX_DEPENDS_ON_BYTES} bytes` };
  }
  const parts = value.split(',');
  if (parts.length > MAX_DEPENDS_ON_REFS) {
    return { error: `${parts.length} references; at most ${MAX_DEPENDS_ON_REFS} are allowed` };
  }
  const refs: DependencyRef[] = [];
  const seen = new Set<string>();
  for (const [i, part] of parts.entries()) {
    const text = part.trim();
    if (text === '') return { error: value.trim() === '' ? 'the value is empty' : `reference ${i + 1} is empty` };
    const ref = parseRef(text);
    if (typeof ref === 'string') return { error: ref };
    const key = refKey(ref.group, ref.kind, ref.namespace, ref.name);
    if (seen.has(key)) continue;
    seen.add(key);
    refs.push(ref);
  }
  return { refs };
}

function refKey(group: string, kind: string, namespace: string | undefined, name: string): string {
  return `${group}/${kind}/${namespace ?? ''}/${name}`;
}

function keyOf(o: ResolvedObject): string {
  return refKey(o.resource.group, o.object.kind, o.object.metadata.namespace, o.object.metadata.name);
}

function problem(o: ResolvedObject, code: string, message: string): Problem {
  return {
    code,
    message: `${o.source.file}:${o.source.line}: ${o.id}: ${message}`,
    file: o.source.file,
    line: o.source.line,
    object: o.id,
  };
}

/** What the objects of one commit can find about each other: by reference, and hints for misses. */
interface SetIndex {
  byKey: Map<string, number>;
  /** `group/kind` → namespaced, for the kinds in the set: a reference of the wrong scope is invalid. */
  scopeOf: Map<string, boolean>;
  /** `kind/name` → the first object of that kind and name, to suggest the reference meant. */
  byKindName: Map<string, number>;
}

function indexSet(objects: readonly ResolvedObject[]): SetIndex {
  const index: SetIndex = { byKey: new Map(), scopeOf: new Map(), byKindName: new Map() };
  objects.forEach((o, i) => {
    const key = keyOf(o);
    if (!index.byKey.has(key)) index.byKey.set(key, i);
    index.scopeOf.set(`${o.resource.group}/${o.object.kind}`, o.resource.namespaced);
    const kindName = `${o.object.kind}/${o.object.metadata.name}`;
    if (!index.byKindName.has(kindName)) index.byKindName.set(kindName, i);
  });
  return index;
}

function refOf(o: ResolvedObject): DependencyRef {
  return {
    group: o.resource.group,
    kind: o.object.kind,
    ...(o.resource.namespaced ? { namespace: o.object.metadata.namespace } : {}),
    name: o.object.metadata.name,
  };
}

/** One object's edges, or the problem that leaves it out on its own account. */
interface ObjectDeps {
  deps: number[];
  problems: Problem[];
}

function resolveDeps(o: ResolvedObject, objects: readonly ResolvedObject[], index: SetIndex): ObjectDeps {
  const value: unknown = o.object.metadata.annotations?.[DEPENDS_ON_ANNOTATION];
  if (value === undefined) return { deps: [], problems: [] };
  const invalid = (why: string): ObjectDeps => ({
    deps: [],
    problems: [problem(o, ProblemCode.DEPENDS_ON_INVALID, `annotation ${DEPENDS_ON_ANNOTATION}: ${why}`)],
  });
  if (typeof value !== 'string') return invalid('the value must be a string');
  const parsed = parseDependsOn(value);
  if ('error' in parsed) return invalid(parsed.error);
  const deps: number[] = [];
  const unknown: string[] = [];
  for (const ref of parsed.refs) {
    const namespaced = index.scopeOf.get(`${ref.group}/${ref.kind}`);
    if (namespaced !== undefined && namespaced !== (ref.namespace !== undefined)) {
      const written = formatDependencyRef(ref);
      const right = namespaced
        ? `${ref.group}/namespaces/<namespace>/${ref.kind}/${ref.name}`
        : `${ref.group}/${ref.kind}/${ref.name}`;
      return invalid(`"${written}": ${ref.kind} is ${namespaced ? 'namespaced' : 'cluster-scoped'}; write "${right}"`);
    }
    const at = index.byKey.get(refKey(ref.group, ref.kind, ref.namespace, ref.name));
    if (at === undefined) unknown.push(unknownRef(ref, objects, index));
    else deps.push(at);
  }
  if (unknown.length === 0) return { deps, problems: [] };
  const shown = unknown.slice(0, MAX_REFS_SHOWN).join(', ');
  const more = unknown.length > MAX_REFS_SHOWN ? ` and ${unknown.length - MAX_REFS_SHOWN} more` : '';
  const message =
    `${DEPENDS_ON_ANNOTATION} names ${shown}${more}, not in this commit: ` +
    'add the object to the commit or remove the reference from the annotation';
  return { deps, problems: [problem(o, ProblemCode.DEPENDS_ON_UNKNOWN, message)] };
}

/** A missing reference, quoted, with the object of the same kind and name if the set has one. */
function unknownRef(ref: DependencyRef, objects: readonly ResolvedObject[], index: SetIndex): string {
  const near = index.byKindName.get(`${ref.kind}/${ref.name}`);
  const quoted = `"${formatDependencyRef(ref)}"`;
  return near === undefined ? quoted : `${quoted} (did you mean "${formatDependencyRef(refOf(objects[near]))}"?)`;
}

/**
 * Strongly connected components (Tarjan), iterative so that a 10,000-object chain cannot overflow
 * the stack. Returns each node's component number; components of one node are numbered too.
 */
function components(deps: readonly number[][]): { component: Int32Array; sizes: number[] } {
  const n = deps.length;
  const order = new Int32Array(n).fill(-1);
  const low = new Int32Array(n);
  const component = new Int32Array(n).fill(-1);
  const onStack = new Uint8Array(n);
  const stack: number[] = [];
  const sizes: number[] = [];
  let counter = 0;
  for (let root = 0; root < n; root++) {
    if (order[root] !== -1) continue;
    // Each frame: a node and the index of the next edge to follow from it.
    const frames: Array<[number, number]> = [[root, 0]];
    order[root] = low[root] = counter++;
    stack.push(root);
    onStack[root] = 1;
    while (frames.length > 0) {
      const frame = frames[frames.length - 1];
      const [v, edge] = frame;
      if (edge < deps[v].length) {
        frame[1] = edge + 1;
        const w = deps[v][edge];
        if (order[w] === -1) {
          order[w] = low[w] = counter++;
          stack.push(w);
          onStack[w] = 1;
          frames.push([w, 0]);
        } else if (onStack[w]) {
          low[v] = Math.min(low[v], order[w]);
        }
        continue;
      }
      frames.pop();
      if (frames.length > 0) {
        const parent = frames[frames.length - 1][0];
        low[parent] = Math.min(low[parent], low[v]);
      }
      if (low[v] !== order[v]) continue;
      const id = sizes.length;
      let size = 0;
      let w: number;
      do {
        w = stack.pop() as number;
        onStack[w] = 0;
        component[w] = id;
        size++;
      } while (w !== v);
      sizes.push(size);
    }
  }
  return { component, sizes };
}

/** The shortest cycle from `start` back to it inside its component (breadth-first), as node indices. */
function cycleThrough(start: number, deps: readonly number[][], component: Int32Array): number[] {
  const from = new Map<number, number>();
  const queue = [start];
  for (let head = 0; head < queue.length; head++) {
    const v = queue[head];
    for (const w of deps[v]) {
      if (component[w] !== component[start]) continue;
      if (w === start) {
        const path = [v];
        while (path[path.length - 1] !== start) path.push(from.get(path[path.length - 1]) as number);
        return [...path.reverse(), start];
      }
      if (!from.has(w)) {
        from.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

/** `A -> B -> A`, the middle elided for a long cycle. */
function showCycle(cycle: readonly number[], objects: readonly ResolvedObject[]): string {
  const ids = cycle.map((i) => objects[i].id);
  if (ids.length <= MAX_CYCLE_SHOWN + 1) return ids.join(' -> ');
  const hidden = ids.length - 1 - MAX_CYCLE_SHOWN;
  return [...ids.slice(0, MAX_CYCLE_SHOWN), `... (${hidden} more)`, ids[ids.length - 1]].join(' -> ');
}

/** Why an object is left out, as its dependents' messages say it. */
interface LeftOut {
  code: string;
  because: string;
}

/**
 * Splits objects into dependency waves: wave 0 depends on nothing, wave n on earlier waves only;
 * within a wave, objects keep their input order. Objects that cannot be ordered are left out, each
 * with a Problem (`object` is its id; several when several things are wrong with it).
 */
export function dependencyWaves(objects: readonly ResolvedObject[]): {
  waves: ResolvedObject[][];
  problems: Problem[];
} {
  const index = indexSet(objects);
  const resolved = objects.map((o) => resolveDeps(o, objects, index));
  const deps = resolved.map((r) => r.deps);
  const problems: Problem[][] = resolved.map((r) => r.problems);
  const leftOut: Array<LeftOut | undefined> = resolved.map((r) => {
    const own = r.problems[0]?.code;
    if (own === undefined) return undefined;
    const why =
      own === ProblemCode.DEPENDS_ON_INVALID ? 'its annotation is invalid' : 'it names objects not in this commit';
    return { code: ProblemCode.DEPENDENCY_NOT_READY, because: `which is not applied: ${why}` };
  });

  // Cycles first: an object on a cycle is named as such even when it has a problem of its own.
  const { component, sizes } = components(deps);
  const cycleOf = new Map<number, string>();
  objects.forEach((_, i) => {
    const c = component[i];
    const onCycle = sizes[c] > 1 || deps[i].includes(i);
    if (!onCycle) return;
    if (!cycleOf.has(c)) cycleOf.set(c, showCycle(cycleThrough(i, deps, component), objects));
    const cycle = cycleOf.get(c) as string;
    problems[i].push(problem(objects[i], ProblemCode.DEPENDS_ON_CYCLE, `depends-on forms a cycle: ${cycle}`));
    leftOut[i] = { code: ProblemCode.DEPENDS_ON_CYCLE, because: `which is on a depends-on cycle: ${cycle}` };
  });

  // Everything that depends, directly or not, on a left-out object waits forever: leave it out too.
  const dependents: number[][] = objects.map(() => []);
  deps.forEach((ds, i) => ds.forEach((d) => dependents[d].push(i)));
  const queue: number[] = [];
  leftOut.forEach((l, i) => l && queue.push(i));
  for (let head = 0; head < queue.length; head++) {
    const d = queue[head];
    const cause = leftOut[d] as LeftOut;
    for (const i of dependents[d]) {
      if (leftOut[i]) continue;
      leftOut[i] = cause;
      problems[i].push(problem(objects[i], cause.code, `depends on ${objects[d].id}, ${cause.because}`));
      queue.push(i);
    }
  }

  return { waves: kahnWaves(objects, deps, leftOut), problems: problems.flat() };
}

/**
 * Kahn's algorithm over the objects not left out (a DAG by now: cycles and their dependents are
 * out): an object's wave is one past its latest dependency's. Objects are then bucketed in input
 * order, so the result is stable without sorting.
 */
function kahnWaves(
  objects: readonly ResolvedObject[],
  deps: readonly number[][],
  leftOut: ReadonlyArray<LeftOut | undefined>,
): ResolvedObject[][] {
  const n = objects.length;
  const waiting = new Int32Array(n);
  const wave = new Int32Array(n);
  const dependents: number[][] = objects.map(() => []);
  const ready: number[] = [];
  for (let i = 0; i < n; i++) {
    if (leftOut[i]) continue;
    for (const d of deps[i]) dependents[d].push(i);
    waiting[i] = deps[i].length;
    if (waiting[i] === 0) ready.push(i);
  }
  let last = -1;
  for (let head = 0; head < ready.length; head++) {
    const v = ready[head];
    last = Math.max(last, wave[v]);
    for (const w of dependents[v]) {
      wave[w] = Math.max(wave[w], wave[v] + 1);
      if (--waiting[w] === 0) ready.push(w);
    }
  }
  const waves: ResolvedObject[][] = Array.from({ length: last + 1 }, () => []);
  for (let i = 0; i < n; i++) if (!leftOut[i]) waves[wave[i]].push(objects[i]);
  return waves;
}
