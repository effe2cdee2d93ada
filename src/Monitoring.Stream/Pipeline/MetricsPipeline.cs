using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Apache.Arrow;
using Microsoft.Extensions.ObjectPool;
using Monitoring.Stream.Arrow;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Series;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Windows;

namespace Monitoring.Stream.Pipeline;

/// <summary>
/// The in-process engine: producers write through <see cref="PointWriter"/>s (one per thread) or a
/// <see cref="SharedPointWriter"/> (any thread) into bounded per-shard channels; one aggregator per shard
/// keeps windowed statistics; each closed window goes to every sink as an Arrow record batch, through
/// the sink's own bounded queue.
/// </summary>
public sealed class MetricsPipeline : IAsyncDisposable
{
    private const int Created = 0;
    private const int Running = 1;
    private const int Stopping = 2;
    private const int Stopped = 3;
    private const int NotForced = 0;
    private const int ForcedByDeadline = 1;
    private const int ForcedBySignal = 2;

    private readonly Channel<PointBatch>[] _channels;
    private readonly ShardAggregator[] _shards;
    private readonly ArrowWindowWriter[] _arrowWriters;
    private readonly SinkRunner[] _sinks;
    private readonly ConcurrentDictionary<string, long> _lateByMetric = new(StringComparer.Ordinal);
    private readonly List<SourceCounters> _sources = [];
    private readonly Dictionary<string, SourceCounters> _retiredTotals = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _retiredWriters = new(StringComparer.Ordinal);
    private readonly List<SharedPointWriter> _sharedWriters = [];
    private readonly HashSet<PointWriter> _writers = new(ReferenceEqualityComparer.Instance);
    private readonly Lock _sourcesGate = new();
    private readonly Lock _stopGate = new();
    private readonly CancellationTokenSource _abort = new();
    private readonly PointBatchPolicy _batchPolicy;
    private SourceCounters[] _liveSources = [];
    private Task[] _shardTasks = [];
    private ITimer? _ticker;
    private ITimer? _flusher;
    private Task? _stopTask;
    private int _state;
    private bool _writersFlushed;
    private int _disposalsHandingOver;
    private int _forcedBy;

    /// <summary>Creates a stopped pipeline that will emit to <paramref name="sinks"/>, each with <paramref name="sinkOptions"/> (or the defaults).</summary>
    /// <exception cref="ArgumentNullException">An argument, or one of the sinks, is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range; the message names it.</exception>
    public MetricsPipeline(MetricsPipelineOptions options, IEnumerable<IWindowSink> sinks, SinkOptions? sinkOptions = null)
        : this(options, ToRegistrations(sinks, sinkOptions))
    {
    }

    /// <summary>Creates a stopped pipeline that will emit to each registered sink with its own queue, timeout and retry settings.</summary>
    /// <exception cref="ArgumentNullException">An argument, or one of the sinks, is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range; the message names it.</exception>
    public MetricsPipeline(MetricsPipelineOptions options, IEnumerable<SinkRegistration> sinks)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(sinks);
        SinkRegistration[] registrations = [.. sinks];
        foreach (SinkRegistration registration in registrations)
        {
            ArgumentNullException.ThrowIfNull(registration, nameof(sinks));
            ArgumentNullException.ThrowIfNull(registration.Sink, nameof(sinks));
        }

        Options = options;
        Settings = options.ToSettings();
        Registry = new SeriesRegistry(options.Registry) { Time = Settings.TimeProvider };
        Schema = WindowSchema.Create(Settings.Instance);
        _batchPolicy = new PointBatchPolicy(Settings.BatchSize);
        BatchPool = new DefaultObjectPool<PointBatch>(_batchPolicy, Settings.ShardCount * Settings.ShardQueueBatches * 2);
        IsAbortedCallback = () => _abort.IsCancellationRequested;
        int shardCount = Settings.ShardCount;
        _channels = new Channel<PointBatch>[shardCount];
        ShardSpaces = new ShardSpace[shardCount];
        ShardBells = new ShardBell[shardCount];
        _shards = new ShardAggregator[shardCount];
        _arrowWriters = new ArrowWindowWriter[shardCount];
        for (int i = 0; i < shardCount; i++)
        {
            _channels[i] = Channel.CreateBounded<PointBatch>(new BoundedChannelOptions(Settings.ShardQueueBatches)
            {
                SingleReader = true,
                SingleWriter = false,
                FullMode = BoundedChannelFullMode.Wait,
                AllowSynchronousContinuations = false,
            });
            _arrowWriters[i] = new ArrowWindowWriter(Registry, shardCount, Schema);
            ShardSpaces[i] = new ShardSpace(Settings.ShardQueueBatches);
            ShardBells[i] = new ShardBell(_channels[i].Reader, Settings.ShardQueueBatches);
            _shards[i] = new ShardAggregator(i, shardCount, _channels[i].Reader, ShardSpaces[i], ShardBells[i], BatchPool, Registry, Settings, _lateByMetric, () => Volatile.Read(ref _liveSources), AllSources, EmitAsync);
        }

        ShardWriters = [.. _channels.Select(c => c.Writer)];
        _sinks = [.. registrations.Select(r => new SinkRunner(r.Sink, (r.Options ?? new SinkOptions()).Validate(), Settings.TimeProvider, _abort.Token))];
    }

    /// <summary>The options the pipeline was created with; the pipeline runs on a snapshot taken then, so later changes have no effect.</summary>
    public MetricsPipelineOptions Options { get; }

    /// <summary>The registry that issues series ids; resolve once and write by id to skip lookups.</summary>
    public SeriesRegistry Registry { get; }

    /// <summary>The Arrow schema of emitted window batches (each batch's own schema adds its window, shard and sequence).</summary>
    public Schema Schema { get; }

    /// <summary>Where the pipeline is in its life.</summary>
    public PipelineState State
    {
        get
        {
            int state = Volatile.Read(ref _state);
            if (state == Running && _shards.Any(s => s.IsDead))
            {
                return PipelineState.Faulted;
            }

            return (PipelineState)state;
        }
    }

    internal MetricsPipelineSettings Settings { get; }

    internal ChannelWriter<PointBatch>[] ShardWriters { get; }

    /// <summary>Where writers wait for room in each shard's queue.</summary>
    internal ShardSpace[] ShardSpaces { get; }

    /// <summary>How each shard is woken after a write to its queue.</summary>
    internal ShardBell[] ShardBells { get; }

    internal ObjectPool<PointBatch> BatchPool { get; }

    internal bool IsStopping => Volatile.Read(ref _state) >= Stopping;

    /// <summary>
    /// The stop has handed every writer's buffer to the shards (or there was nothing to flush: stopped before it
    /// started) and is closing the shard queues: a writer's batch can no longer enter, so it is dropped and counted.
    /// </summary>
    internal bool WritersFlushed => Volatile.Read(ref _writersFlushed);

    /// <summary>A writer disposed during a graceful stop begins handing its kept batches over outside its gate (called under the gate, before the stop's flush of that writer can run).</summary>
    internal void DisposalHandOverBegins() => Interlocked.Increment(ref _disposalsHandingOver);

    /// <summary>That hand-over has ended (its batches entered their shards, or were dropped and counted).</summary>
    internal void DisposalHandOverEnds() => Interlocked.Decrement(ref _disposalsHandingOver);

    internal bool IsShardFaulted(int shard) => _shards[shard].IsDead;

    /// <summary>A stop was forced (deadline passed, or a second signal): nothing waits any more.</summary>
    internal bool IsAborted => _abort.IsCancellationRequested;

    /// <summary><see cref="IsAborted"/> as a delegate made once, for the writers' gates to give up waiting on.</summary>
    internal Func<bool> IsAbortedCallback { get; }

    private static IEnumerable<SinkRegistration> ToRegistrations(IEnumerable<IWindowSink> sinks, SinkOptions? sinkOptions)
    {
        ArgumentNullException.ThrowIfNull(sinks);
        return [.. sinks.Select(s => new SinkRegistration(s ?? throw new ArgumentNullException(nameof(sinks), "A sink is null."), sinkOptions))];
    }

    /// <summary>Starts the shards, the sinks, the clock tick and the flush of quiet writers.</summary>
    /// <exception cref="InvalidOperationException">The pipeline was started or stopped before.</exception>
    public void Start()
    {
        if (Interlocked.CompareExchange(ref _state, Running, Created) != Created)
        {
            throw new InvalidOperationException("The pipeline has already been started or stopped.");
        }

        foreach (SinkRunner sink in _sinks)
        {
            sink.Start();
        }

        _shardTasks = [.. _shards.Select(s => Task.Run(s.RunAsync))];
        TimeProvider time = Settings.TimeProvider;
        _ticker = time.CreateTimer(static state => ((MetricsPipeline)state!).Tick(), this, Settings.TickInterval, Settings.TickInterval);
        _flusher = time.CreateTimer(static state => ((MetricsPipeline)state!).FlushSharedWriters(), this, Settings.ProducerFlushInterval, Settings.ProducerFlushInterval);
    }

    /// <summary>Creates a writer for one producing thread, counted under <paramref name="source"/>; it is one source of event time.</summary>
    public PointWriter CreateWriter(string source, BackpressureMode mode = BackpressureMode.Wait)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(source);
        if (!Enum.IsDefined(mode))
        {
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "Unknown backpressure mode.");
        }

        return CreateWriterCore(source, mode, threadBound: true);
    }

    /// <summary>
    /// Creates a writer that is safe from any thread (as OpenTelemetry's instruments are), counted under
    /// <paramref name="source"/>; the engine flushes what idle threads leave buffered within the flush interval.
    /// </summary>
    public SharedPointWriter CreateSharedWriter(string source, BackpressureMode mode = BackpressureMode.DropNewest)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(source);
        if (!Enum.IsDefined(mode))
        {
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "Unknown backpressure mode.");
        }

        var writer = new SharedPointWriter(this, source, mode);
        lock (_sourcesGate)
        {
            _sharedWriters.Add(writer);
        }

        return writer;
    }

    internal PointWriter CreateWriterCore(string source, BackpressureMode mode, bool threadBound)
    {
        SourceCounters counters;
        lock (_sourcesGate)
        {
            counters = new SourceCounters(source, _sources.Count, Settings.ShardCount, Settings.TimeProvider.GetUtcNow().ToUnixTimeMilliseconds());
            _sources.Add(counters);
            Volatile.Write(ref _liveSources, [.. _liveSources.Where(s => !s.Retired), counters]);
        }

        var writer = new PointWriter(this, source, mode, counters, threadBound);
        if (threadBound)
        {
            lock (_sourcesGate)
            {
                _writers.Add(writer);
            }

            if (IsStopping)
            {
                // Created while the stop began: its constructor may have read the state before the stop set it,
                // and the stop's list of writers to close may have been taken before it was added. Not yet
                // handed out, so nobody is inside it.
                writer.CloseForStop(IsAbortedCallback);
            }
        }

        return writer;
    }

    internal void Unregister(PointWriter writer)
    {
        lock (_sourcesGate)
        {
            _writers.Remove(writer);
        }
    }

    internal void Unregister(SharedPointWriter writer)
    {
        lock (_sourcesGate)
        {
            _sharedWriters.Remove(writer);
        }
    }

    private void Tick()
    {
        long now = Settings.TimeProvider.GetUtcNow().ToUnixTimeMilliseconds();
        for (int i = 0; i < _channels.Length; i++)
        {
            // A full channel means data is flowing; the shard then takes the tick with the next batch handed
            // over after it, so idle and disposed sources still stop holding the watermark under overload.
            if (_channels[i].Writer.TryWrite(new PointBatch(0) { Kind = BatchKind.Tick, SentAt = now }))
            {
                ShardBells[i].Ring(urgent: true);
            }
            else
            {
                _shards[i].DeferTick(now);
            }
        }

        lock (_sourcesGate)
        {
            if (_liveSources.Any(s => s.Retired))
            {
                Volatile.Write(ref _liveSources, [.. _liveSources.Where(s => !s.Retired)]);
            }

            FoldRetiredSourcesLocked();
        }
    }

    /// <summary>
    /// A disposed writer whose every batch is acknowledged by every shard is done changing: its counts
    /// move into its source name's totals and its object goes, so writers that come and go (threads,
    /// Kafka partitions) do not grow the pipeline.
    /// </summary>
    private void FoldRetiredSourcesLocked()
    {
        _sources.RemoveAll(s =>
        {
            if (!s.Retired)
            {
                return false;
            }

            for (int k = 0; k < s.FinalSeq.Length; k++)
            {
                if (Volatile.Read(ref s.AckedSeq[k]) < s.FinalSeq[k])
                {
                    return false;
                }
            }

            if (!_retiredTotals.TryGetValue(s.Name, out SourceCounters? totals))
            {
                _retiredTotals[s.Name] = totals = new SourceCounters(s.Name, -1, 0, 0);
                _retiredWriters[s.Name] = 0;
            }

            totals.Offered += s.Offered;
            totals.Accepted += s.Accepted;
            totals.Late += Interlocked.Read(ref s.Late);
            totals.Misuse += Interlocked.Read(ref s.Misuse);
            for (int r = 0; r < s.Rejected.Length; r++)
            {
                totals.Rejected[r] += s.Rejected[r];
            }

            for (int r = 0; r < s.Dropped.Length; r++)
            {
                totals.Dropped[r] += s.Dropped[r];
            }

            _retiredWriters[s.Name]++;
            return true;
        });
    }

    /// <summary>Every source not yet folded into its name's totals: those that may still have batches on their way to a shard.</summary>
    private SourceCounters[] AllSources()
    {
        lock (_sourcesGate)
        {
            return [.. _sources];
        }
    }

    /// <summary>Writers' counter objects the pipeline holds: live ones and disposed ones not yet folded into their name's totals.</summary>
    internal int SourceObjects
    {
        get
        {
            lock (_sourcesGate)
            {
                return _sources.Count;
            }
        }
    }

    private void FlushSharedWriters()
    {
        SharedPointWriter[] shared;
        PointWriter[] writers;
        lock (_sourcesGate)
        {
            shared = [.. _sharedWriters];
            writers = [.. _writers];
        }

        TimeProvider time = Settings.TimeProvider;
        long idleSince = time.GetTimestamp() - (long)(Settings.ProducerFlushInterval.TotalSeconds * time.TimestampFrequency);
        foreach (SharedPointWriter writer in shared)
        {
            writer.FlushIdle(idleSince, wait: false);
        }

        foreach (PointWriter writer in writers)
        {
            writer.FlushIfQuiet(idleSince);
        }
    }

    /// <summary>Returns once every shard has processed everything written to it before this call (at once, after a stop: the stop drained them).</summary>
    public async Task DrainAsync(CancellationToken cancellationToken = default)
    {
        var barriers = new Task[_channels.Length];
        for (int i = 0; i < _channels.Length; i++)
        {
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            try
            {
                await _channels[i].Writer.WriteAsync(new PointBatch(0) { Kind = BatchKind.Barrier, Barrier = done }, cancellationToken).ConfigureAwait(false);
                ShardBells[i].Ring(urgent: true);
            }
            catch (ChannelClosedException)
            {
                // Stopping or stopped: the shard reads what is left and ends; its end is the barrier.
                barriers[i] = _shardTasks.Length > i ? _shardTasks[i].ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default) : Task.CompletedTask;
                continue;
            }

            barriers[i] = done.Task;
        }

        await Task.WhenAll(barriers).WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask EmitAsync(WindowBuffer window, int shard, long sequence, Action<WindowBatch, bool> onDone)
    {
        RecordBatch batch = _arrowWriters[shard].Build(window, shard, sequence);
        var windowBatch = new WindowBatch(batch, window.Start, window.End, shard, Settings.Instance, sequence, window.Points, onDone) { Bytes = WindowBatch.ColumnBytes(batch) };
        if (_sinks.Length == 0)
        {
            windowBatch.Release();
            onDone(windowBatch, false);
            return;
        }

        windowBatch.ExpectOutcomes(_sinks.Length);
        for (int i = 0; i < _sinks.Length; i++)
        {
            // Each sink has its own queue: under drop-oldest this never waits; under block it waits for
            // that sink's room. On a forced stop the runner counts the window as abandoned for that sink.
            await _sinks[i].EnqueueAsync(windowBatch).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Stops gracefully: later writes are refused and counted, every queued batch is aggregated, every
    /// open window is emitted, and every sink drains. Cancelling <paramref name="cancellationToken"/> — a
    /// second stop signal — abandons what is left at once and throws <see cref="OperationCanceledException"/>;
    /// passing <see cref="MetricsPipelineOptions.ShutdownTimeout"/> does the same and throws
    /// <see cref="TimeoutException"/>. Either way every window a sink did not get is counted in its
    /// abandoned counters. There is one stop: a concurrent or later call waits for it and ends as it ended
    /// (its token is a second signal too while the stop runs): it returns when the stop was graceful, throws
    /// <see cref="TimeoutException"/> only when the shutdown timeout did pass, and
    /// <see cref="OperationCanceledException"/> when a signal (another caller's token, or its own) forced the stop.
    /// </summary>
    /// <exception cref="OperationCanceledException">A second stop signal forced this stop, now or in an earlier call: what was left was abandoned (counted per sink).</exception>
    /// <exception cref="TimeoutException">The stop did not finish within <see cref="MetricsPipelineOptions.ShutdownTimeout"/> (now or in an earlier call) and was forced.</exception>
    /// <exception cref="AggregateException">A shard's loop had died on an error it could not contain: the stop still emitted what the other shards held.</exception>
    public Task StopAsync(CancellationToken cancellationToken = default)
    {
        Task stop;
        lock (_stopGate)
        {
            if (_stopTask is null)
            {
                int previous = Interlocked.Exchange(ref _state, Stopping);
                CloseWritersForStop();
                _stopTask = previous == Created ? MarkStopped() : StopCoreAsync();
            }

            stop = _stopTask;
        }

        return WaitForStopAsync(stop, cancellationToken);
    }

    /// <summary>The writers and shared writers registered now.</summary>
    private (PointWriter[] Writers, SharedPointWriter[] Shared) SnapshotWriters()
    {
        lock (_sourcesGate)
        {
            return ([.. _writers], [.. _sharedWriters]);
        }
    }

    /// <summary>
    /// Later writes are refused from here on: each writer's timestamp bounds are closed under its gate (see
    /// <see cref="PointWriter.CloseForStop"/>), so the writers' fast path needs no read of the pipeline's state.
    /// </summary>
    private void CloseWritersForStop()
    {
        // The wait for a call under way is microseconds; the bound (the shutdown timeout, on the real clock) is
        // only for a thread stuck inside a call, which must not hang StopAsync before its task even exists.
        TimeSpan timeout = Settings.ShutdownTimeout;
        long deadline = timeout < TimeSpan.Zero
            ? long.MaxValue
            : Stopwatch.GetTimestamp() + (long)Math.Min(timeout.TotalSeconds * Stopwatch.Frequency, long.MaxValue / 2);
        Func<bool> giveUp = () => IsAborted || Stopwatch.GetTimestamp() > deadline;
        (PointWriter[] writers, SharedPointWriter[] shared) = SnapshotWriters();

        foreach (PointWriter writer in writers)
        {
            writer.CloseForStop(giveUp);
        }

        foreach (SharedPointWriter writer in shared)
        {
            writer.CloseForStop(giveUp);
        }
    }

    private Task MarkStopped()
    {
        Volatile.Write(ref _writersFlushed, true);
        Volatile.Write(ref _state, Stopped);
        return Task.CompletedTask;
    }

    private async Task WaitForStopAsync(Task stop, CancellationToken cancellationToken)
    {
        using CancellationTokenRegistration abortOnSignal = cancellationToken.Register(static s => ((MetricsPipeline)s!).Force(ForcedBySignal), this);
        try
        {
            await stop.ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException && cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException("The stop was forced by a second signal; what was left was abandoned and counted in each sink's abandoned counters.", e, cancellationToken);
        }
    }

    /// <summary>Abandons what the stop has left, remembering the first cause so that every caller learns the true one.</summary>
    private void Force(int cause)
    {
        Interlocked.CompareExchange(ref _forcedBy, cause, NotForced);
        _abort.Cancel();
    }

    private async Task StopCoreAsync()
    {
        using var deadline = new CancellationTokenSource(Settings.ShutdownTimeout, Settings.TimeProvider);
        using CancellationTokenRegistration abortOnDeadline = deadline.Token.Register(static s => ((MetricsPipeline)s!).Force(ForcedByDeadline), this);

        // The deadline counts from the call; the rest runs off the caller's thread and out of the stop's lock: the
        // flush of the writers below waits for room in full shard queues, which a sink holding its window keeps full;
        // run synchronously, that wait blocked StopAsync's caller before it got a task, and a second caller's signal
        // could not force the stop.
        await Task.Yield();
        if (_flusher is not null)
        {
            await _flusher.DisposeAsync().ConfigureAwait(false);
        }

        if (_ticker is not null)
        {
            await _ticker.DisposeAsync().ConfigureAwait(false);
        }

        // Points written before the stop and still buffered in writers go to the shards first: a graceful
        // stop leaves nothing pending (a writer busy in a call is waited for: see PointWriter.FlushForStop).
        (PointWriter[] writers, SharedPointWriter[] shared) = SnapshotWriters();

        foreach (PointWriter writer in writers)
        {
            writer.FlushForStop();
        }

        foreach (SharedPointWriter writer in shared)
        {
            writer.FlushForStop();
        }

        // A writer disposed during the stop hands its kept batches over itself, outside its gate (the flush above
        // skips a disposed writer): the queues stay open until those hand-overs are done, or the stop is forced.
        while (Volatile.Read(ref _disposalsHandingOver) > 0 && !IsAborted)
        {
            await Task.Delay(1).ConfigureAwait(false);
        }

        Volatile.Write(ref _writersFlushed, true);
        for (int i = 0; i < _channels.Length; i++)
        {
            _channels[i].Writer.TryComplete();
            ShardBells[i].Ring(urgent: true);
        }

        bool forced;
        try
        {
            try
            {
                await Task.WhenAll(_shardTasks).WaitAsync(_abort.Token).ConfigureAwait(false);
            }
            catch (Exception) when (!_abort.IsCancellationRequested && _shardTasks.Any(t => t.IsFaulted))
            {
                // A dead shard is reported below; the others' windows still go to the sinks.
            }

            await Task.WhenAll(_sinks.Select(s => s.CompleteAsync(_abort.Token))).ConfigureAwait(false);
            forced = _abort.IsCancellationRequested;
        }
        catch (OperationCanceledException) when (_abort.IsCancellationRequested)
        {
            forced = true;
        }
        finally
        {
            Volatile.Write(ref _state, Stopped);
        }

        if (forced)
        {
            // The shards and runners see the abort within moments and count what they abandon: wait for
            // that (bounded: a sink that ignores cancellation is already stopped waiting for), so the
            // counters are settled when the caller reads them.
            try
            {
                await Task.WhenAll([.. _shardTasks, .. _sinks.Select(s => s.Loop)]).WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
            }
            catch (Exception e) when (e is TimeoutException or OperationCanceledException || _shardTasks.Any(t => t.IsFaulted))
            {
                // Counted as far as they got; a dead shard is in the fault counters.
            }

            // The work that raced the abort may have finished anyway; either way the caller learns the
            // stop was not graceful, why (this task's outcome is what every later StopAsync reports), and the
            // sinks' abandoned counters say what it cost.
            if (Volatile.Read(ref _forcedBy) == ForcedByDeadline)
            {
                throw new TimeoutException(
                    $"The pipeline did not stop gracefully within its shutdown timeout ({Settings.ShutdownTimeout.TotalSeconds:0.###} s); what was left was abandoned and counted in each sink's abandoned counters.");
            }

            throw new OperationCanceledException(
                "The pipeline's stop was forced by a second stop signal (a StopAsync caller's token) before it finished gracefully; what was left was abandoned and counted in each sink's abandoned counters.");
        }

        Exception[] faults = [.. _shardTasks.Where(t => t.IsFaulted).SelectMany(t => t.Exception!.InnerExceptions)];
        if (faults.Length > 0)
        {
            throw new AggregateException("A shard's loop died on an error it could not contain; its queued points are counted as lost.", faults);
        }
    }

    /// <summary>A snapshot of the self-metrics.</summary>
    public PipelineMetrics GetMetrics()
    {
        // Batches waiting for a lazy wake-up (ShardBell) are taken now, so what is read here is current.
        foreach (ShardBell bell in ShardBells)
        {
            bell.Nudge();
        }

        // Counters are read in the reverse of a point's life, so that every remainder of the snapshot (pending,
        // queued, open) is a count, never negative, while points move: a point's later counter is always raised
        // after its earlier one (a writer counts a batch accepted before the shard can take it; a shard counts a
        // point aggregated before its window is emitted, and takes a window that fails off aggregated before it
        // counts it faulted), so reading the later one first never sees a point there that the earlier one, read
        // after, misses. The shards' counters come first: emitted, faulted, late and stale before aggregated.
        var shardCounts = new (long Emitted, long Aggregated, long Late, long Faulted, long Stale)[_shards.Length];
        for (int i = 0; i < _shards.Length; i++)
        {
            long emitted = _shards[i].EmittedPoints;
            long shardFaulted = _shards[i].FaultedPoints;
            long shardLate = _shards[i].Late;
            long shardStale = _shards[i].Stale;
            shardCounts[i] = (emitted, _shards[i].Aggregated, shardLate, shardFaulted, shardStale);
        }

        SourceCounters[] sources;
        var folded = new Dictionary<string, int>(StringComparer.Ordinal);
        lock (_sourcesGate)
        {
            sources = [.. _sources, .. _retiredTotals.Values];
            foreach (KeyValuePair<string, int> p in _retiredWriters)
            {
                folded[p.Key] = p.Value;
            }
        }

        var rejected = Enum.GetValues<RejectReason>().Where(r => r != RejectReason.None).ToDictionary(r => r, _ => 0L);
        var dropped = Enum.GetValues<DropReason>().ToDictionary(r => r, _ => 0L);
        var bySource = new Dictionary<string, long[]>(StringComparer.Ordinal);
        long offered = 0, accepted = 0, misuse = 0;
        foreach (SourceCounters s in sources)
        {
            // Dropped before accepted (a batch that fails to enter its shard is taken off accepted before it is
            // counted dropped), both before offered.
            long sourceRejected = 0, sourceDropped = 0;
            foreach (DropReason r in dropped.Keys)
            {
                long n = Volatile.Read(ref s.Dropped[(int)r]);
                dropped[r] += n;
                sourceDropped += n;
            }

            long sourceAccepted = Volatile.Read(ref s.Accepted);
            foreach (RejectReason r in rejected.Keys)
            {
                long n = Volatile.Read(ref s.Rejected[(int)r]);
                rejected[r] += n;
                sourceRejected += n;
            }

            long sourceOffered = Volatile.Read(ref s.Offered);
            offered += sourceOffered;
            accepted += sourceAccepted;
            misuse += Interlocked.Read(ref s.Misuse);
            if (!bySource.TryGetValue(s.Name, out long[]? totals))
            {
                bySource[s.Name] = totals = new long[7];
            }

            totals[0] += sourceOffered;
            totals[1] += sourceAccepted;
            totals[2] += sourceRejected;
            totals[3] += sourceDropped;
            totals[4] += Volatile.Read(ref s.Dropped[(int)DropReason.QueueFull]);
            totals[5] += Interlocked.Read(ref s.Late);
            totals[6] += s.Index >= 0 ? 1 : folded[s.Name];
        }

        long faulted = shardCounts.Sum(c => c.Faulted);
        Exception? lastFault = _shards.Select(s => s.LastFault).LastOrDefault(e => e is not null);
        return new PipelineMetrics
        {
            State = State,
            Offered = offered,
            Accepted = accepted,
            RejectedByReason = rejected,
            DroppedByReason = dropped,
            Sources = [.. bySource.Select(p => new SourceMetrics(p.Key, p.Value[0], p.Value[1], p.Value[2], p.Value[3], p.Value[4], p.Value[5], (int)p.Value[6]))],
            Late = shardCounts.Sum(c => c.Late),
            LateByMetric = new Dictionary<string, long>(_lateByMetric, StringComparer.Ordinal),
            EmittedPoints = shardCounts.Sum(c => c.Emitted),
            OpenWindowPoints = shardCounts.Sum(c => c.Aggregated - c.Emitted),
            FaultedPoints = faulted,
            StalePoints = shardCounts.Sum(c => c.Stale),
            SeriesReclaimed = Registry.Reclaimed,
            SeriesRetired = Registry.Retired,
            HeldStateBytes = _shards.Sum(s => s.HeldBytes),
            Faults = _shards.Sum(s => s.Faults),
            LastFault = lastFault is null ? null : $"{lastFault.GetType().Name}: {lastFault.Message}",
            WriterMisuse = misuse,
            WindowsEmitted = _shards.Sum(s => s.WindowsEmitted),
            SeriesActive = Registry.LiveCount,
            OverflowResolutions = Registry.OverflowResolutions,
            ShardQueueDepth = [.. _channels.Select(c => c.Reader.Count)],
            ShardQueueCapacity = Settings.ShardQueueBatches,
            OpenStateBytes = _shards.Sum(s => s.OpenStateBytes),
            BatchesAllocated = _batchPolicy.Created,
            Memory = ReportMemory(),
            ActiveSources = _shards.Max(s => s.ActiveSources),
            Watermarks = [.. _shards.Select(s => s.Watermark)],
            Sinks = [.. _sinks.Select(s => new SinkMetrics(
                s.Sink.Name, s.QueueDepth, s.QueueCapacity, s.BatchesWritten, s.PointsWritten, s.BatchesFailed, s.PointsFailed, s.Errors, s.LastError,
                s.BatchesAbandoned, s.PointsAbandoned, s.State, s.BatchesDropped, s.PointsDropped, s.Timeouts, s.Options.QueuePolicy, s.QueueBytes, s.Options.QueueCapacityBytes,
                s.BusyFor))],
        };
    }

    /// <summary>
    /// Bytes a registry entry holds, as an estimate for the memory report: descriptor, label set, canonical
    /// label array of three or four labels, UTF-8 names cached at the first emission, and the id arrays.
    /// Docs/benchmarks.md measured 122 B of entry and 135 B of names per series; the names are 96 B since
    /// a series' record holds the index of its metric's name rather than the name (<c>load --only memory</c>:
    /// three labels, a 36-byte metric name). A reclaimed index keeps its descriptor until reused. The
    /// metrics' names, a record of ~100 B per metric, are not counted.
    /// </summary>
    private const int RegistryBytesPerIndex = 260;

    /// <summary>The registry's table: two 32-bit words and a 24-byte slot per bucket, at least two buckets per live series.</summary>
    private const int RegistryTableBytesPerSeries = 2 * 28;

    private PipelineMemory ReportMemory() => new()
    {
        OpenWindowBytes = _shards.Sum(s => s.OpenStateBytes),
        SpareWindowBytes = _shards.Sum(s => s.SpareWindowBytes),
        SketchPoolBytes = _shards.Sum(s => s.SketchPoolBytes),
        PooledSketches = _shards.Sum(s => s.PooledSketches),
        SeriesSlotBytes = _shards.Sum(s => s.SlotBytes),
        PointBatchBytes = _batchPolicy.Created * ((long)Settings.BatchSize * System.Runtime.CompilerServices.Unsafe.SizeOf<IngestPoint>() + 64),
        WindowBatchBytes = _arrowWriters.Sum(w => w.Pool.RentedBytes),
        ColumnPoolBytes = _arrowWriters.Sum(w => w.Pool.PooledBytes),
        RegistryBytes = ((long)Registry.Count * RegistryBytesPerIndex) + ((long)Registry.LiveCount * RegistryTableBytesPerSeries) + Registry.IdentityIndexBytes,
    };

    /// <summary>
    /// Stops gracefully if running (bounded by <see cref="MetricsPipelineOptions.ShutdownTimeout"/>; a
    /// timed-out or faulted stop is not rethrown here, its losses are in the counters), then disposes the sinks.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            await StopAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException or AggregateException or OperationCanceledException)
        {
            // Counted in the sinks' abandoned counters and the fault counters; disposing must not throw.
        }

        foreach (SinkRunner sink in _sinks)
        {
            try
            {
                await sink.Sink.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // One sink failing to dispose must not keep the others open.
            }
        }

        // Not disposed: shard and sink tasks abandoned by a forced stop may still observe the token.
        _abort.Cancel();
    }

    /// <summary>
    /// The fill of the fullest shard's queue, batches waiting over <see cref="MetricsPipelineOptions.ShardQueueBatches"/>
    /// (0 to 1): what <see cref="PipelineMetrics.ShardQueueDepth"/> tells, without taking a whole snapshot, for
    /// sources that poll it often to decide when to pause (it allocates nothing).
    /// </summary>
    public double ShardQueueFill
    {
        get
        {
            int fullest = 0;
            foreach (Channel<PointBatch> channel in _channels)
            {
                fullest = Math.Max(fullest, channel.Reader.Count);
            }

            return fullest / (double)Settings.ShardQueueBatches;
        }
    }
}
