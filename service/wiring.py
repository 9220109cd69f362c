"""The one place that builds concrete adapters from settings and hands them out.

Nothing else imports a concrete backend (boto3, the provider clients, the downloader): they
receive what they need from the Container built here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import requests
from pydantic import SecretStr

from service import __version__
from service.archive.inline_inputs import InlineInputs
from service.archive.parallel import IMAGES_AT_ONCE
from service.archive.pipeline import Archiver, ImageLimits, ImageStager
from service.archive.thumbnails import Thumbnailer
from service.config import Settings
from service.db.models import Job
from service.db.retention import Pruner
from service.db.session import Database, make_engine
from service.events.delivery import Deliverer
from service.events.destinations.base import AddressCheck, OpenContext
from service.events.destinations.registry import Destinations
from service.fetch.downloader import Downloader
from service.fetch.policy import AddressPolicy, HostPolicy
from service.jobs.applying import CallbackApplier, PendingCallbacks
from service.jobs.callbacks import CallbackReceiver
from service.jobs.failures import GiveUp
from service.jobs.ingest import WebhookIngest
from service.jobs.polling import Poller, Reconciler
from service.jobs.results import PollTiming
from service.jobs.submission import Submitter
from service.jobs.uncertain import UncertainSubmissions
from service.providers.aimlapi import AimlApiClient
from service.providers.base import Provider, ProviderResult
from service.providers.endpoints import get_endpoint
from service.providers.modelslab import ModelsLabClient
from service.security.signing import signer_from_settings
from service.storage.base import ArchiveStore
from service.storage.filesystem import FilesystemStore
from service.storage.url import parse_archive_url
from service.tasks.kinds import TaskKind
from service.tasks.queue import TaskQueue
from service.tasks.retry_policy import RetryPolicy
from service.tasks.wakeup import Wakeup, build_wakeup, notify_on_commit
from service.tasks.worker import Handler, Periodic, Worker


def build_store(settings: Settings) -> ArchiveStore:
    location = parse_archive_url(settings.archive_url)
    if location.scheme == "file":
        assert location.path is not None
        # Without a secret key the store still reads and writes; only url() needs it.
        secret = settings.secret if settings.secret_key is not None else None
        return FilesystemStore(location.path, url_base=settings.public_url, secret=secret)
    assert location.bucket is not None
    # Imported here: boto3 costs each process about 0.1 s of CPU to import, and a service on
    # the embedded file archive never needs it.
    from service.storage.s3 import S3Store

    return S3Store(
        location.bucket,
        location.prefix,
        sse=settings.s3_sse,
        kms_key_id=settings.s3_kms_key_id,
        storage_class=settings.s3_storage_class,
        object_lock_mode=settings.s3_object_lock_mode,
        object_lock_days=settings.s3_object_lock_days,
        multipart_threshold=settings.s3_multipart_threshold,
        # Each of the worker's jobs stores up to IMAGES_AT_ONCE objects side by side.
        connections=settings.worker_concurrency * IMAGES_AT_ONCE,
    )


def build_downloader(settings: Settings, *, any_public_host: bool = False) -> Downloader:
    """Outputs come only from the providers' hosts; inputs from any public host."""
    hosts = ("*",) if any_public_host else settings.download_allowed_hosts
    return Downloader(
        hosts=HostPolicy(hosts),
        addresses=AddressPolicy(settings.download_allowed_networks),
        max_bytes=settings.download_max_bytes,
        connect_timeout=settings.download_connect_timeout,
        read_timeout=settings.download_read_timeout,
        total_timeout=settings.download_total_timeout,
        max_redirects=settings.download_max_redirects,
        user_agent=f"genvault/{__version__}",
    )


def build_providers(settings: Settings, session: requests.Session) -> dict[str, Provider]:
    def secret(value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value is not None else None

    return {
        "modelslab": ModelsLabClient(
            settings.modelslab_base_url,
            secret(settings.modelslab_api_key),
            secret(settings.modelslab_enterprise_api_key),
            session=session,
            timeout=settings.provider_timeout,
        ),
        "aimlapi": AimlApiClient(
            settings.aimlapi_base_url,
            secret(settings.aimlapi_api_key),
            session=session,
            timeout=settings.provider_timeout,
        ),
    }


@dataclass
class Container:
    settings: Settings
    db: Database
    queue: TaskQueue
    store: ArchiveStore
    providers: dict[str, Provider]
    http: requests.Session
    policy: RetryPolicy
    timing: PollTiming
    receiver: CallbackReceiver
    archiver: Archiver
    inline_inputs: InlineInputs
    workdir: Path | None = None
    wakeup: Wakeup | None = None
    # Set by an embedded worker (genvault dev) so new work starts without waiting a poll.
    wake_event: threading.Event | None = field(default=None, repr=False)
    _destinations: Destinations | None = field(default=None, repr=False)

    def wake_workers(self) -> None:
        if self.wake_event is not None:
            self.wake_event.set()

    def worker(self, concurrency: int | None = None) -> Worker:
        s = self.settings
        abandon_writes = threading.Event()
        handlers: dict[TaskKind, Handler] = {
            TaskKind.SUBMIT: Submitter(
                self.db,
                self.queue,
                self.providers,
                s.public_url,
                s.secret,
                self.timing,
                self.inline_inputs,
                UncertainSubmissions(s.submit_uncertain_grace_seconds, s.resubmit_uncertain),
                abandon_writes,
            ),
            TaskKind.POLL: Poller(self.db, self.queue, self.providers, self.timing),
            TaskKind.ARCHIVE: self.archiver,
            TaskKind.DELIVER_EVENT: Deliverer(
                self.db,
                self.store,
                self.destinations(),
                secret=s.secret,
                public_url=s.public_url,
                timeout=s.events_timeout,
                schedule=s.events_retry_schedule,
                disable_after=s.events_disable_after_seconds,
                endpoint_concurrency=s.events_endpoint_concurrency,
                presign_expires=s.presign_expires_seconds,
            ),
            TaskKind.CALLBACK: CallbackApplier(self.db, self.queue, self.timing),
        }
        reconciler = Reconciler(
            self.db,
            self.queue,
            self.timing,
            stuck_after=s.job_stuck_after_seconds,
            max_age=s.job_max_age_seconds,
            orphan_after=s.job_orphan_after_seconds,
        )
        worker = Worker(
            self.queue,
            handlers,
            on_give_up=GiveUp(self.db),
            policy=self.policy,
            concurrency=concurrency or s.worker_concurrency,
            poll_interval=s.worker_poll_interval,
            periodic=[
                Periodic("reconcile", s.reconcile_interval_seconds, reconciler),
                Periodic("prune", s.retention_interval_seconds, Pruner(self.db, s.retention_days)),
            ],
            abandon_writes=abandon_writes,
            wakeup=self.wakeup,
            intake=PendingCallbacks(self.db, self.queue, self.timing),
        )
        self.wake_event = worker.wake_event
        return worker

    def destinations(self) -> Destinations:
        """The worker process's opened endpoint destinations (closed with the container)."""
        if self._destinations is None:
            s = self.settings
            self._destinations = Destinations(
                OpenContext(
                    AddressCheck(s.events_allowed_networks),
                    timeout=s.events_timeout,
                    user_agent=f"genvault/{__version__}",
                )
            )
        return self._destinations

    def close(self) -> None:
        if self._destinations is not None:
            self._destinations.close()
        self.http.close()
        self.receiver.ingest.close()
        self.receiver.ingest.engine.dispose()
        if self.wakeup is not None:
            self.wakeup.close()
        self.db.dispose()


def build(settings: Settings) -> Container:
    db = Database(make_engine(settings.database_url))
    policy = RetryPolicy(
        max_attempts=settings.task_max_attempts,
        base_seconds=settings.retry_base_seconds,
        max_seconds=settings.retry_max_seconds,
    )
    queue = TaskQueue(
        db,
        lease_seconds=settings.worker_lease_seconds,
        default_max_attempts=settings.task_max_attempts,
    )
    timing = PollTiming(settings.poll_grace_seconds, settings.poll_max_attempts)
    http = requests.Session()
    http.headers["User-Agent"] = f"genvault/{__version__}"
    providers = build_providers(settings, http)
    store = build_store(settings)
    limits = ImageLimits(settings.download_max_bytes, settings.max_image_pixels)

    def confirm(job: Job) -> ProviderResult:
        provider = providers[get_endpoint(job.endpoint).provider]
        return provider.fetch(job.endpoint, job.provider_request_id, job.fetch_url)

    archiver = Archiver(
        db,
        store,
        ImageStager(build_downloader(settings), limits),
        ImageStager(build_downloader(settings, any_public_host=True), limits),
        nsfw_policy=settings.nsfw_policy,
        signer=signer_from_settings(settings),
        confirm=confirm if settings.confirm_callbacks else None,
        thumbnailer=Thumbnailer(db, store, max_pixels=settings.max_image_pixels),
    )
    wakeup = build_wakeup(settings.database_url)
    if wakeup is not None:
        notify_on_commit(db, wakeup)
    receiver = CallbackReceiver(
        WebhookIngest(
            # Its own pool, autocommit and without pre-ping: the webhook's write is one round
            # trip (jobs/ingest.py). SQLite is in process: the one engine serves.
            make_engine(settings.database_url, pool_pre_ping=False, isolation_level="AUTOCOMMIT")
            if db.dialect != "sqlite"
            else db.engine,
            on_queued=wakeup.notify if wakeup is not None else lambda: None,
        ),
        providers,
        settings.secret,
    )
    inline_inputs = InlineInputs(
        db, store, archiver.inputs, url_expires=settings.presign_expires_seconds
    )
    return Container(
        settings=settings,
        db=db,
        queue=queue,
        store=store,
        providers=providers,
        http=http,
        policy=policy,
        timing=timing,
        receiver=receiver,
        archiver=archiver,
        inline_inputs=inline_inputs,
        wakeup=wakeup,
    )
