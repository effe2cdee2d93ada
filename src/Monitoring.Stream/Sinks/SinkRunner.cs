using System.Threading.Channels;

namespace Monitoring.Stream.Sinks;

/// <summary>
/// Feeds one sink from its own bounded queue, retrying failed writes with exponential backoff, and
/// keeps the counters that make a slow or broken sink visible. One runner per sink, so a sink that
/// stalls holds back the others only once its own queue is full.
/// </summary>
internal sealed class SinkRunner
{
    private readonly IWindowSink _sink;
    private readonly SinkOptions _options;
    private readonly TimeProvider _time;
    private readonly Channel<WindowBatch> _queue;
    private readonly CancellationToken _abort;
    private Task? _loop;
    private long _batchesWritten;
    private long _pointsWritten;
    private long _batchesFailed;
    private long _pointsFailed;
    private long _errors;
    private long _batchesAbandoned;
    private long _pointsAbandoned;
    private string? _lastError;

    /// <param name="sink">The sink fed.</param>
    /// <param name="options">Queue and retry settings.</param>
    /// <param name="time">The clock of the backoff.</param>
    /// <param name="abort">Cancelled when a stop is forced: the write in progress is cancelled and what is queued is abandoned.</param>
    public SinkRunner(IWindowSink sink, SinkOptions options, TimeProvider time, CancellationToken abort)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(options.QueueCapacity, 1, nameof(options.QueueCapacity));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxAttempts, 1, nameof(options.MaxAttempts));
        _sink = sink;
        _options = options;
        _time = time;
        _abort = abort;
        _queue = Channel.CreateBounded<WindowBatch>(new BoundedChannelOptions(options.QueueCapacity)
        {
            SingleReader = true,
            SingleWriter = false,
            FullMode = BoundedChannelFullMode.Wait,
            AllowSynchronousContinuations = false,
        });
    }

    public IWindowSink Sink => _sink;

    public int QueueDepth => _queue.Reader.Count;

    public int QueueCapacity => _options.QueueCapacity;

    public long BatchesWritten => Interlocked.Read(ref _batchesWritten);

    public long PointsWritten => Interlocked.Read(ref _pointsWritten);

    public long BatchesFailed => Interlocked.Read(ref _batchesFailed);

    public long PointsFailed => Interlocked.Read(ref _pointsFailed);

    public long Errors => Interlocked.Read(ref _errors);

    public string? LastError => Volatile.Read(ref _lastError);

    public long BatchesAbandoned => Interlocked.Read(ref _batchesAbandoned);

    public long PointsAbandoned => Interlocked.Read(ref _pointsAbandoned);

    public void Start() => _loop = Task.Run(RunAsync);

    /// <summary>
    /// Queues a batch, waiting while the queue is full. If the stop is forced first, the batch is
    /// released and counted as abandoned instead.
    /// </summary>
    public async ValueTask EnqueueAsync(WindowBatch batch)
    {
        try
        {
            await _queue.Writer.WriteAsync(batch, _abort).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or ChannelClosedException)
        {
            Abandon(batch);
        }
    }

    /// <summary>Stops taking batches and waits until the queued ones are written or given up.</summary>
    public async Task CompleteAsync(CancellationToken cancellationToken)
    {
        _queue.Writer.TryComplete();
        if (_loop is not null)
        {
            await _loop.WaitAsync(cancellationToken).ConfigureAwait(false);
        }

        try
        {
            await _sink.CompleteAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            RecordError(e);
        }
    }

    private async Task RunAsync()
    {
        ChannelReader<WindowBatch> reader = _queue.Reader;
        try
        {
            while (await reader.WaitToReadAsync(_abort).ConfigureAwait(false))
            {
                while (!_abort.IsCancellationRequested && reader.TryRead(out WindowBatch? batch))
                {
                    await WriteWithRetryAsync(batch).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (_abort.IsCancellationRequested)
        {
            // Forced stop: what is still queued is abandoned below.
        }

        while (reader.TryRead(out WindowBatch? left))
        {
            Abandon(left);
        }
    }

    private async Task WriteWithRetryAsync(WindowBatch batch)
    {
        TimeSpan delay = _options.InitialBackoff;
        try
        {
            for (int attempt = 1; ; attempt++)
            {
                try
                {
                    await _sink.WriteAsync(batch, _abort).ConfigureAwait(false);
                    Interlocked.Increment(ref _batchesWritten);
                    Interlocked.Add(ref _pointsWritten, batch.Points);
                    batch.Release();
                    return;
                }
                catch (Exception e) when (!(e is OperationCanceledException && _abort.IsCancellationRequested))
                {
                    RecordError(e);
                    if (attempt >= _options.MaxAttempts)
                    {
                        // Given up: the window is lost for this sink, and the counters say how much.
                        Interlocked.Increment(ref _batchesFailed);
                        Interlocked.Add(ref _pointsFailed, batch.Points);
                        batch.Release();
                        return;
                    }
                }

                await Task.Delay(delay, _time, _abort).ConfigureAwait(false);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _options.MaxBackoff.Ticks));
            }
        }
        catch (OperationCanceledException) when (_abort.IsCancellationRequested)
        {
            Abandon(batch);
        }
    }

    private void Abandon(WindowBatch batch)
    {
        Interlocked.Increment(ref _batchesAbandoned);
        Interlocked.Add(ref _pointsAbandoned, batch.Points);
        batch.Release();
    }

    private void RecordError(Exception e)
    {
        Interlocked.Increment(ref _errors);
        Volatile.Write(ref _lastError, $"{e.GetType().Name}: {e.Message}");
    }
}
