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
    private Task? _loop;
    private long _batchesWritten;
    private long _pointsWritten;
    private long _batchesFailed;
    private long _pointsFailed;
    private long _errors;
    private string? _lastError;

    public SinkRunner(IWindowSink sink, SinkOptions options, TimeProvider time)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(options.QueueCapacity, 1, nameof(options.QueueCapacity));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxAttempts, 1, nameof(options.MaxAttempts));
        _sink = sink;
        _options = options;
        _time = time;
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

    public void Start() => _loop = Task.Run(RunAsync);

    /// <summary>Queues a batch, waiting while the queue is full.</summary>
    public ValueTask EnqueueAsync(WindowBatch batch, CancellationToken cancellationToken) => _queue.Writer.WriteAsync(batch, cancellationToken);

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
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            while (reader.TryRead(out WindowBatch? batch))
            {
                try
                {
                    await WriteWithRetryAsync(batch).ConfigureAwait(false);
                }
                finally
                {
                    batch.Release();
                }
            }
        }
    }

    private async Task WriteWithRetryAsync(WindowBatch batch)
    {
        TimeSpan delay = _options.InitialBackoff;
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                await _sink.WriteAsync(batch, CancellationToken.None).ConfigureAwait(false);
                Interlocked.Increment(ref _batchesWritten);
                Interlocked.Add(ref _pointsWritten, batch.Points);
                return;
            }
            catch (Exception e)
            {
                RecordError(e);
                if (attempt >= _options.MaxAttempts)
                {
                    // Given up: the window is lost for this sink, and the counters say how much.
                    Interlocked.Increment(ref _batchesFailed);
                    Interlocked.Add(ref _pointsFailed, batch.Points);
                    return;
                }
            }

            await Task.Delay(delay, _time).ConfigureAwait(false);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _options.MaxBackoff.Ticks));
        }
    }

    private void RecordError(Exception e)
    {
        Interlocked.Increment(ref _errors);
        Volatile.Write(ref _lastError, $"{e.GetType().Name}: {e.Message}");
    }
}
