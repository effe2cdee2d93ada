using System.Collections.Concurrent;
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
/// The in-process engine: producers write through <see cref="PointWriter"/>s into bounded per-shard
/// channels; one aggregator per shard keeps windowed statistics; each closed window goes to every
/// sink as an Arrow record batch.
/// </summary>
public sealed class MetricsPipeline : IAsyncDisposable
{
    private const int Created = 0;
    private const int Running = 1;
    private const int Stopping = 2;
    private const int Stopped = 3;

    private readonly MetricsPipelineSettings _settings;
    private readonly Channel<PointBatch>[] _channels;
    private readonly ShardAggregator[] _shards;
    private readonly ArrowWindowWriter[] _arrowWriters;
    private readonly SinkRunner[] _sinks;
    private readonly ConcurrentDictionary<string, long> _lateByMetric = new(StringComparer.Ordinal);
    private readonly List<SourceCounters> _sources = [];
    private readonly Lock _sourcesGate = new();
    private readonly CancellationTokenSource _abort = new();
    private readonly PointBatchPolicy _batchPolicy;
    private Task[] _shardTasks = [];
    private ITimer? _ticker;
    private int _state;

    /// <summary>Creates a stopped pipeline that will emit to <paramref name="sinks"/>.</summary>
    public MetricsPipeline(MetricsPipelineOptions options, IEnumerable<IWindowSink> sinks, SinkOptions? sinkOptions = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(sinks);
        Options = options;
        _settings = options.Validate();
        Registry = new SeriesRegistry(options.Registry);
        Schema = WindowSchema.Create(options.Instance);
        _batchPolicy = new PointBatchPolicy(options.BatchSize);
        BatchPool = new DefaultObjectPool<PointBatch>(_batchPolicy, options.ShardCount * options.ShardQueueBatches * 2);
        int shardCount = options.ShardCount;
        _channels = new Channel<PointBatch>[shardCount];
        _shards = new ShardAggregator[shardCount];
        _arrowWriters = new ArrowWindowWriter[shardCount];
        for (int i = 0; i < shardCount; i++)
        {
            _channels[i] = Channel.CreateBounded<PointBatch>(new BoundedChannelOptions(options.ShardQueueBatches)
            {
                SingleReader = true,
                SingleWriter = false,
                FullMode = BoundedChannelFullMode.Wait,
                AllowSynchronousContinuations = false,
            });
            _arrowWriters[i] = new ArrowWindowWriter(Registry, shardCount, Schema);
            _shards[i] = new ShardAggregator(i, shardCount, _channels[i].Reader, BatchPool, Registry, _settings, _lateByMetric, EmitAsync);
        }

        ShardWriters = [.. _channels.Select(c => c.Writer)];
        SinkOptions runnerOptions = sinkOptions ?? new SinkOptions();
        _sinks = [.. sinks.Select(s => new SinkRunner(s, runnerOptions, options.TimeProvider, _abort.Token))];
    }

    /// <summary>The settings the pipeline was created with.</summary>
    public MetricsPipelineOptions Options { get; }

    /// <summary>The registry that issues series ids; resolve once and write by id to skip lookups.</summary>
    public SeriesRegistry Registry { get; }

    /// <summary>The Arrow schema of emitted window batches.</summary>
    public Schema Schema { get; }

    internal ChannelWriter<PointBatch>[] ShardWriters { get; }

    internal ObjectPool<PointBatch> BatchPool { get; }

    internal bool IsStopping => Volatile.Read(ref _state) >= Stopping;

    /// <summary>Starts the shards, the sinks and the clock tick.</summary>
    public void Start()
    {
        if (Interlocked.CompareExchange(ref _state, Running, Created) != Created)
        {
            throw new InvalidOperationException("The pipeline has already been started.");
        }

        foreach (SinkRunner sink in _sinks)
        {
            sink.Start();
        }

        _shardTasks = [.. _shards.Select(s => Task.Run(s.RunAsync))];
        _ticker = Options.TimeProvider.CreateTimer(static state => ((MetricsPipeline)state!).Tick(), this, Options.TickInterval, Options.TickInterval);
    }

    /// <summary>Creates a writer for one producing thread, counted under <paramref name="source"/>.</summary>
    public PointWriter CreateWriter(string source, BackpressureMode mode = BackpressureMode.Wait)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(source);
        var counters = new SourceCounters(source);
        int index;
        lock (_sourcesGate)
        {
            index = _sources.Count;
            _sources.Add(counters);
        }

        return new PointWriter(this, source, index, mode, counters);
    }

    private void Tick()
    {
        foreach (Channel<PointBatch> channel in _channels)
        {
            // A full channel means data is flowing, and then the watermark moves by itself.
            channel.Writer.TryWrite(new PointBatch(0) { Kind = BatchKind.Tick });
        }
    }

    /// <summary>Returns once every shard has processed everything written to it before this call.</summary>
    public async Task DrainAsync(CancellationToken cancellationToken = default)
    {
        var barriers = new Task[_channels.Length];
        for (int i = 0; i < _channels.Length; i++)
        {
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            await _channels[i].Writer.WriteAsync(new PointBatch(0) { Kind = BatchKind.Barrier, Barrier = done }, cancellationToken).ConfigureAwait(false);
            barriers[i] = done.Task;
        }

        await Task.WhenAll(barriers).WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask EmitAsync(WindowBuffer window, int shard)
    {
        RecordBatch batch = _arrowWriters[shard].Build(window, shard, out ColumnLease lease);
        var windowBatch = new WindowBatch(batch, window.Start, window.End, shard, Options.Instance, window.Points, lease);
        if (_sinks.Length == 0)
        {
            batch.Dispose();
            lease.Dispose();
            return;
        }

        windowBatch.Retain(_sinks.Length);
        for (int i = 0; i < _sinks.Length; i++)
        {
            // On a forced stop the runner counts the window as abandoned for that sink.
            await _sinks[i].EnqueueAsync(windowBatch).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Stops gracefully: producers' later flushes are dropped (and counted), every queued batch is
    /// aggregated, every open window is emitted, and every sink drains. Cancelling
    /// <paramref name="cancellationToken"/> — a second stop signal — abandons what is left at once and
    /// throws <see cref="OperationCanceledException"/>; so does passing
    /// <see cref="MetricsPipelineOptions.ShutdownTimeout"/>, which throws <see cref="TimeoutException"/>.
    /// Either way every window a sink did not get is counted in its abandoned counters.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        int previous = Interlocked.Exchange(ref _state, Stopping);
        if (previous == Stopping || previous == Stopped)
        {
            return;
        }

        using var deadline = new CancellationTokenSource(Options.ShutdownTimeout, Options.TimeProvider);
        using CancellationTokenRegistration abortOnSignal = cancellationToken.Register(static s => ((CancellationTokenSource)s!).Cancel(), _abort);
        using CancellationTokenRegistration abortOnDeadline = deadline.Token.Register(static s => ((CancellationTokenSource)s!).Cancel(), _abort);
        if (_ticker is not null)
        {
            await _ticker.DisposeAsync().ConfigureAwait(false);
        }

        foreach (Channel<PointBatch> channel in _channels)
        {
            channel.Writer.TryComplete();
        }

        bool forced;
        try
        {
            await Task.WhenAll(_shardTasks).WaitAsync(_abort.Token).ConfigureAwait(false);
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
            // The work that raced the abort may have finished anyway; either way the caller learns the
            // stop was not graceful, and the sinks' abandoned counters say what it cost.
            cancellationToken.ThrowIfCancellationRequested();
            throw new TimeoutException(
                $"The pipeline did not stop gracefully within {Options.ShutdownTimeout.TotalSeconds:0.###} s; what was left was abandoned and counted in each sink's abandoned counters.");
        }
    }

    /// <summary>A snapshot of the self-metrics.</summary>
    public PipelineMetrics GetMetrics()
    {
        SourceCounters[] sources;
        lock (_sourcesGate)
        {
            sources = [.. _sources];
        }

        var rejected = Enum.GetValues<RejectReason>().Where(r => r != RejectReason.None).ToDictionary(r => r, _ => 0L);
        var dropped = Enum.GetValues<DropReason>().ToDictionary(r => r, _ => 0L);
        var bySource = new Dictionary<string, long[]>(StringComparer.Ordinal);
        long offered = 0, accepted = 0;
        foreach (SourceCounters s in sources)
        {
            long sourceRejected = 0, sourceDropped = 0;
            foreach (RejectReason r in rejected.Keys)
            {
                long n = Volatile.Read(ref s.Rejected[(int)r]);
                rejected[r] += n;
                sourceRejected += n;
            }

            foreach (DropReason r in dropped.Keys)
            {
                long n = Volatile.Read(ref s.Dropped[(int)r]);
                dropped[r] += n;
                sourceDropped += n;
            }

            long sourceOffered = Volatile.Read(ref s.Offered);
            long sourceAccepted = Volatile.Read(ref s.Accepted);
            offered += sourceOffered;
            accepted += sourceAccepted;
            if (!bySource.TryGetValue(s.Name, out long[]? totals))
            {
                bySource[s.Name] = totals = new long[5];
            }

            totals[0] += sourceOffered;
            totals[1] += sourceAccepted;
            totals[2] += sourceRejected;
            totals[3] += sourceDropped;
            totals[4] += Volatile.Read(ref s.Dropped[(int)DropReason.QueueFull]);
        }

        return new PipelineMetrics
        {
            Offered = offered,
            Accepted = accepted,
            RejectedByReason = rejected,
            DroppedByReason = dropped,
            Sources = [.. bySource.Select(p => new SourceMetrics(p.Key, p.Value[0], p.Value[1], p.Value[2], p.Value[3], p.Value[4]))],
            Late = _shards.Sum(s => s.Late),
            LateByMetric = new Dictionary<string, long>(_lateByMetric, StringComparer.Ordinal),
            EmittedPoints = _shards.Sum(s => s.EmittedPoints),
            OpenWindowPoints = _shards.Sum(s => s.Aggregated - s.EmittedPoints),
            WindowsEmitted = _shards.Sum(s => s.WindowsEmitted),
            SeriesActive = Registry.Count,
            OverflowResolutions = Registry.OverflowResolutions,
            ShardQueueDepth = [.. _channels.Select(c => c.Reader.Count)],
            ShardQueueCapacity = Options.ShardQueueBatches,
            OpenStateBytes = _shards.Sum(s => s.OpenStateBytes),
            BatchesAllocated = _batchPolicy.Created,
            Sinks = [.. _sinks.Select(s => new SinkMetrics(s.Sink.Name, s.QueueDepth, s.QueueCapacity, s.BatchesWritten, s.PointsWritten, s.BatchesFailed, s.PointsFailed, s.Errors, s.LastError, s.BatchesAbandoned, s.PointsAbandoned))],
        };
    }

    /// <summary>
    /// Stops gracefully if running (bounded by <see cref="MetricsPipelineOptions.ShutdownTimeout"/>;
    /// a timed-out stop is not rethrown here, its losses are in the sink counters), then disposes the sinks.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Volatile.Read(ref _state) == Running)
        {
            try
            {
                await StopAsync().ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // Counted in the sinks' abandoned counters; disposing must not throw.
            }
        }

        foreach (SinkRunner sink in _sinks)
        {
            await sink.Sink.DisposeAsync().ConfigureAwait(false);
        }

        // Not disposed: shard and sink tasks abandoned by a forced stop may still observe the token.
        _abort.Cancel();
    }
}
