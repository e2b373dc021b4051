/**
 * Leader election over a coordination.k8s.io/v1 Lease, so two agent replicas are safe: only the
 * holder applies and corrects drift. Both replicas keep their session with the server and persist
 * every desired state, so a standby that takes over applies at once; only the leader sends
 * `status` and `drift` (the standby has nothing to report, and one voice per agent keeps the
 * server's view simple).
 *
 * The protocol is client-go's: the holder renews `renewTime` every `renewIntervalMs`; anyone may
 * take a Lease whose `renewTime + leaseDurationSeconds` has passed or whose holder is empty; every
 * write is an update guarded by `resourceVersion`, so two candidates cannot both win. A leader that
 * cannot renew for `renewDeadlineMs` steps down before its Lease can expire under it. A clean
 * shutdown releases the Lease (empty holder) so the standby takes over without waiting for expiry.
 */
import type { Logger } from '../common/logger.js';
import { errorMessage } from '../common/errors.js';
import { AlreadyExistsError, ConflictError, NotFoundError, resourcePath, type KubeClient } from './kube/client.js';
import type { KubeObject, ResourceInfo } from './kube/types.js';

const LEASES: ResourceInfo = {
  group: 'coordination.k8s.io',
  version: 'v1',
  kind: 'Lease',
  plural: 'leases',
  namespaced: true,
};

export interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number | null;
  acquireTime?: string | null;
  renewTime?: string | null;
  leaseTransitions?: number | null;
}

/** What to do with a Lease as it stands (pure). */
export function leaseDecision(
  spec: LeaseSpec | undefined,
  identity: string,
  now: number,
): 'renew' | 'acquire' | 'standby' {
  const holder = spec?.holderIdentity ?? '';
  if (holder === identity) return 'renew';
  if (!holder) return 'acquire';
  const renewed = spec?.renewTime ? Date.parse(spec.renewTime) : NaN;
  const duration = (spec?.leaseDurationSeconds ?? 0) * 1000;
  if (Number.isNaN(renewed) || renewed + duration < now) return 'acquire';
  return 'standby';
}

/** A Lease MicroTime: RFC 3339 with exactly six fractional digits, as the API server parses it. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** Lease name for an agent: stable per agent id so every replica of one agent contends for it. */
export function leaseName(agentId: string): string {
  return `gitops-agent-${agentId}`.slice(0, 63);
}

export interface LeaderElectorOptions {
  client: KubeClient;
  namespace: string;
  name: string;
  identity: string;
  logger: Logger;
  onChange: (leader: boolean) => void;
  leaseDurationMs?: number;
  renewIntervalMs?: number;
  /** How often a standby looks at the Lease (default 2 s). */
  retryIntervalMs?: number;
  /** A leader that could not renew for this long steps down (default 10 s). */
  renewDeadlineMs?: number;
}

export class LeaderElector {
  private readonly opts: LeaderElectorOptions;
  private leader = false;
  private lastRenew = 0;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private running?: Promise<void>;
  private lastError = '';

  constructor(options: LeaderElectorOptions) {
    this.opts = options;
  }

  start(): void {
    this.tick();
  }

  /** Stops contending and releases the Lease if held. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    if (this.leader) {
      // Stepping down on purpose: no 'lost leadership' line, the release below says what happened.
      this.leader = false;
      this.opts.onChange(false);
      try {
        const lease = await this.read();
        const spec = (lease?.spec ?? {}) as LeaseSpec;
        if (lease && spec.holderIdentity === this.opts.identity) {
          await this.write(lease, {
            ...spec,
            holderIdentity: '',
            leaseDurationSeconds: 1,
            renewTime: microTime(Date.now()),
          });
          this.opts.logger.info({ lease: this.leaseRef() }, 'leader lease released');
        }
      } catch (err) {
        this.opts.logger.warn(
          { lease: this.leaseRef(), err: errorMessage(err) },
          'could not release the leader lease; the standby takes over when it expires',
        );
      }
    }
  }

  private leaseRef(): string {
    return `${this.opts.namespace}/${this.opts.name}`;
  }

  private tick(): void {
    if (this.stopped) return;
    this.running = this.attempt().finally(() => {
      this.running = undefined;
      if (this.stopped) return;
      const delay = this.leader ? (this.opts.renewIntervalMs ?? 5_000) : (this.opts.retryIntervalMs ?? 2_000);
      this.timer = setTimeout(() => this.tick(), delay);
      this.timer.unref();
    });
  }

  private setLeader(leader: boolean): void {
    if (this.leader === leader) return;
    this.leader = leader;
    this.opts.logger.info(
      { lease: this.leaseRef(), identity: this.opts.identity },
      leader ? 'became leader' : 'lost leadership',
    );
    this.opts.onChange(leader);
  }

  private async read(): Promise<KubeObject | undefined> {
    try {
      return await this.opts.client.get(LEASES, this.opts.namespace, this.opts.name);
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  private async write(lease: KubeObject, spec: LeaseSpec): Promise<void> {
    const body: KubeObject = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: lease.metadata.name,
        namespace: lease.metadata.namespace,
        resourceVersion: lease.metadata.resourceVersion,
      },
      spec,
    };
    await this.opts.client.request('PUT', resourcePath(LEASES, this.opts.namespace, this.opts.name), {
      body,
      query: { fieldManager: this.opts.client.fieldManager },
      id: `Lease/${this.leaseRef()}`,
    });
  }

  private async attempt(): Promise<void> {
    const now = Date.now();
    const durationSeconds = Math.ceil((this.opts.leaseDurationMs ?? 15_000) / 1000);
    try {
      const lease = await this.read();
      if (!lease) {
        const spec: LeaseSpec = {
          holderIdentity: this.opts.identity,
          leaseDurationSeconds: durationSeconds,
          acquireTime: microTime(now),
          renewTime: microTime(now),
          leaseTransitions: 0,
        };
        await this.opts.client.create(LEASES, {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: this.opts.name, namespace: this.opts.namespace },
          spec,
        });
        this.won(now);
        return;
      }
      const spec = (lease.spec ?? {}) as LeaseSpec;
      const decision = leaseDecision(spec, this.opts.identity, now);
      if (decision === 'standby') {
        if (this.leader) this.setLeader(false);
        this.lastError = '';
        return;
      }
      const next: LeaseSpec =
        decision === 'renew'
          ? { ...spec, leaseDurationSeconds: durationSeconds, renewTime: microTime(now) }
          : {
              holderIdentity: this.opts.identity,
              leaseDurationSeconds: durationSeconds,
              acquireTime: microTime(now),
              renewTime: microTime(now),
              leaseTransitions: (spec.leaseTransitions ?? 0) + (spec.holderIdentity ? 1 : 0),
            };
      await this.write(lease, next);
      this.won(now);
    } catch (err) {
      // A conflict only means someone else wrote the Lease first: nothing to log, look again next round.
      if (!(err instanceof ConflictError || err instanceof AlreadyExistsError)) {
        const message = errorMessage(err);
        if (message !== this.lastError)
          this.opts.logger.warn({ lease: this.leaseRef(), err: message }, 'leader lease request failed');
        this.lastError = message;
      }
      if (this.leader && now - this.lastRenew > (this.opts.renewDeadlineMs ?? 10_000)) {
        this.opts.logger.warn({ lease: this.leaseRef() }, 'could not renew the leader lease in time: stepping down');
        this.setLeader(false);
      }
    }
  }

  private won(now: number): void {
    this.lastRenew = now;
    this.lastError = '';
    this.setLeader(true);
  }
}
