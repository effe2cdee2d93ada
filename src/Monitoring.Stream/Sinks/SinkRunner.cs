using System.Threading.Channels;

namespace Monitoring.Stream.Sinks;

/// <summary>
/// Feeds one sink from its own bounded queue, with a timeout per attempt and retries with exponential
/// backoff, and keeps the counters that make a slow or broken sink visible. One runner per sink: a
/// sink that stalls holds back nothing but itself, unless its policy is to block and its queue is full.
/// </summary>
/// <remarks>
/// Every window handed to the runner ends in exactly one of its counters: written, failed (given up
/// after every attempt), dropped (queue overflow under <see cref="SinkQueuePolicy.DropOldest"/>) or
/// abandoned (a forced stop).
/// The queue is bounded twice: in batches by the channel, and in bytes (<see cref="SinkOptions.QueueCapacityBytes"/>)
/// by a reservation each batch takes before it goes in and gives back when the loop takes it out (or it is
/// dropped), so a queue of large windows (many series) holds no more memory than the setting says.
/// </remarks>
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
    private long _batchesDropped;
    private long _pointsDropped;
    private long _errors;
    private long _timeouts;
    private long _batchesAbandoned;
    private long _pointsAbandoned;
    private long _lastDropTimestamp = long.MinValue;
    private long _takenTimestamp = long.MinValue;
    private long _queuedBytes;
    private TaskCompletionSource _bytesFreed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _retrying;
    private int _waiters;
    private string? _lastError;

    /// <param name="sink">The sink fed.</param>
    /// <param name="options">Validated queue, timeout and retry settings.</param>
    /// <param name="time">The clock of timeouts and backoff.</param>
    /// <param name="abort">Cancelled when a stop is forced: the write in progress is cancelled and what is queued is abandoned.</param>
    public SinkRunner(IWindowSink sink, SinkOptions options, TimeProvider time, CancellationToken abort)
    {
        _sink = sink;
        _options = options;
        _time = time;
        _abort = abort;
        var channelOptions = new BoundedChannelOptions(options.QueueCapacity)
        {
            // Not single: under drop-oldest a producer takes the oldest batches out to make room in bytes.
            SingleReader = false,
            SingleWriter = false,
            FullMode = options.QueuePolicy == SinkQueuePolicy.DropOldest ? BoundedChannelFullMode.DropOldest : BoundedChannelFullMode.Wait,
            AllowSynchronousContinuations = false,
        };
        _queue = Channel.CreateBounded<WindowBatch>(channelOptions, Dropped);
    }

    public IWindowSink Sink => _sink;

    public SinkOptions Options => _options;

    public int QueueDepth => _queue.Reader.Count;

    public int QueueCapacity => _options.QueueCapacity;

    /// <summary>Bytes of the batches waiting (and of those admitted and on their way in).</summary>
    public long QueueBytes => Interlocked.Read(ref _queuedBytes);

    public long BatchesWritten => Interlocked.Read(ref _batchesWritten);

    public long PointsWritten => Interlocked.Read(ref _pointsWritten);

    public long BatchesFailed => Interlocked.Read(ref _batchesFailed);

    public long PointsFailed => Interlocked.Read(ref _pointsFailed);

    public long BatchesDropped => Interlocked.Read(ref _batchesDropped);

    public long PointsDropped => Interlocked.Read(ref _pointsDropped);

    public long Errors => Interlocked.Read(ref _errors);

    public long Timeouts => Interlocked.Read(ref _timeouts);

    /// <summary>A failing delivery's error while it fails (see <see cref="IDeliveryStatus"/>), else the last failed write's.</summary>
    public string? LastError => _sink is IDeliveryStatus { DeliveryState: not SinkState.Ok, DeliveryError: string delivery }
        ? delivery
        : Volatile.Read(ref _lastError) ?? (_sink as IDeliveryStatus)?.DeliveryError;

    public long BatchesAbandoned => Interlocked.Read(ref _batchesAbandoned);

    /// <summary>How long the sink has been on the window it holds (writing or retrying it); zero when it holds none.</summary>
    public TimeSpan BusyFor
    {
        get
        {
            long taken = Volatile.Read(ref _takenTimestamp);
            return taken == long.MinValue ? TimeSpan.Zero : _time.GetElapsedTime(taken);
        }
    }

    public long PointsAbandoned => Interlocked.Read(ref _pointsAbandoned);

    /// <summary>The sink's state now: stalled and dropping win over retrying.</summary>
    public SinkState State
    {
        get
        {
            if (Volatile.Read(ref _waiters) > 0)
            {
                return SinkState.Stalled;
            }

            long lastDrop = Volatile.Read(ref _lastDropTimestamp);
            if (lastDrop != long.MinValue && _time.GetElapsedTime(lastDrop) < TimeSpan.FromSeconds(10))
            {
                return SinkState.Dropping;
            }

            SinkState own = Volatile.Read(ref _retrying) != 0 ? SinkState.Retrying : SinkState.Ok;
            SinkState delivery = _sink is IDeliveryStatus status ? status.DeliveryState : SinkState.Ok;
            return delivery switch
            {
                SinkState.Dropping => SinkState.Dropping,
                SinkState.Retrying => SinkState.Retrying,
                _ => own,
            };
        }
    }

    public void Start() => _loop = Task.Run(RunAsync);

    /// <summary>The runner's loop; it ends promptly once a stop is forced, after counting what it abandoned.</summary>
    public Task Loop => _loop ?? Task.CompletedTask;

    /// <summary>
    /// Queues a batch. Under <see cref="SinkQueuePolicy.Block"/> a full queue makes the caller wait; under
    /// <see cref="SinkQueuePolicy.DropOldest"/> it never waits. If the stop is forced first, the batch is
    /// counted as abandoned for this sink instead.
    /// </summary>
    public ValueTask EnqueueAsync(WindowBatch batch)
    {
        if (_abort.IsCancellationRequested)
        {
            Abandon(batch);
            return ValueTask.CompletedTask;
        }

        if (!TryReserve(batch.Bytes, force: false))
        {
            if (_options.QueuePolicy == SinkQueuePolicy.Block)
            {
                return EnqueueSlowAsync(batch, reserved: false);
            }

            MakeRoomDroppingOldest(batch.Bytes);
        }

        if (_queue.Writer.TryWrite(batch))
        {
            return ValueTask.CompletedTask;
        }

        return EnqueueSlowAsync(batch, reserved: true);
    }

    private async ValueTask EnqueueSlowAsync(WindowBatch batch, bool reserved)
    {
        Interlocked.Increment(ref _waiters);
        try
        {
            while (!reserved)
            {
                // Read the signal before checking, so a release between the check and the wait still wakes us.
                Task freed = Volatile.Read(ref _bytesFreed).Task;
                reserved = TryReserve(batch.Bytes, force: false);
                if (!reserved)
                {
                    await freed.WaitAsync(_abort).ConfigureAwait(false);
                }
            }

            await _queue.Writer.WriteAsync(batch, _abort).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or ChannelClosedException)
        {
            if (reserved)
            {
                ReleaseBytes(batch);
            }

            Abandon(batch);
        }
        finally
        {
            Interlocked.Decrement(ref _waiters);
        }
    }

    /// <summary>Takes <paramref name="bytes"/> of the byte capacity; an empty queue takes any batch, and <paramref name="force"/> takes it regardless.</summary>
    private bool TryReserve(long bytes, bool force)
    {
        while (true)
        {
            long queued = Interlocked.Read(ref _queuedBytes);
            if (!force && queued > 0 && queued + bytes > _options.QueueCapacityBytes)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _queuedBytes, queued + bytes, queued) == queued)
            {
                return true;
            }
        }
    }

    /// <summary>Drop-oldest over the byte bound: the oldest waiting batches go (counted as dropped) until the new one fits.</summary>
    private void MakeRoomDroppingOldest(long bytes)
    {
        while (!TryReserve(bytes, force: false))
        {
            if (_queue.Reader.TryRead(out WindowBatch? oldest))
            {
                Dropped(oldest);
            }
            else
            {
                // What is counted is on its way in (another shard's batch): nothing to drop, let this one in too.
                TryReserve(bytes, force: true);
                return;
            }
        }
    }

    /// <summary>A batch left the queue (taken, dropped or abandoned): its bytes are free, and a producer waiting for them wakes.</summary>
    private void ReleaseBytes(WindowBatch batch)
    {
        Interlocked.Add(ref _queuedBytes, -batch.Bytes);
        Interlocked.Exchange(ref _bytesFreed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }

    /// <summary>Stops taking batches and waits until the queued ones are written or given up, then completes the sink.</summary>
    public async Task CompleteAsync(CancellationToken cancellationToken)
    {
        _queue.Writer.TryComplete();
        if (_loop is not null)
        {
            await _loop.WaitAsync(cancellationToken).ConfigureAwait(false);
        }

        try
        {
            // WaitAsync: a sink that ignores the token still cannot hold the stop past the caller's bound.
            await _sink.CompleteAsync(cancellationToken).AsTask().WaitAsync(cancellationToken).ConfigureAwait(false);
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
                    ReleaseBytes(batch);
                    Volatile.Write(ref _takenTimestamp, _time.GetTimestamp());
                    try
                    {
                        await WriteWithRetryAsync(batch).ConfigureAwait(false);
                    }
                    finally
                    {
                        Volatile.Write(ref _takenTimestamp, long.MinValue);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (_abort.IsCancellationRequested)
        {
            // Forced stop: what is still queued is abandoned below.
        }

        // Closed first, so a window handed over while this drains is refused (and abandoned by its
        // caller) instead of stranded in a queue nobody reads.
        _queue.Writer.TryComplete();
        while (reader.TryRead(out WindowBatch? left))
        {
            ReleaseBytes(left);
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
                Exception? failure = await AttemptAsync(batch).ConfigureAwait(false);
                if (failure is null)
                {
                    Volatile.Write(ref _retrying, 0);
                    Interlocked.Increment(ref _batchesWritten);
                    Interlocked.Add(ref _pointsWritten, batch.Points);
                    batch.CompleteOutcome(abandoned: false);
                    return;
                }

                RecordError(failure);
                if (attempt >= _options.MaxAttempts)
                {
                    // Given up: the window is lost for this sink, and the counters say how much.
                    Volatile.Write(ref _retrying, 0);
                    Interlocked.Increment(ref _batchesFailed);
                    Interlocked.Add(ref _pointsFailed, batch.Points);
                    batch.CompleteOutcome(abandoned: false);
                    return;
                }

                Volatile.Write(ref _retrying, 1);
                await Task.Delay(delay, _time, _abort).ConfigureAwait(false);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _options.MaxBackoff.Ticks));
            }
        }
        catch (OperationCanceledException) when (_abort.IsCancellationRequested)
        {
            Abandon(batch);
        }
    }

    /// <summary>One write, bounded by the attempt timeout and the abort token; null on success, else why not.</summary>
    private async Task<Exception?> AttemptAsync(WindowBatch batch)
    {
        // The sink gets its own view of the batch, disposed only when its write has really finished:
        // a write that outlives its timeout (a sink that ignores cancellation) still reads valid memory.
        WindowBatch view = batch.ShareWithSink();
        using CancellationTokenSource timeout = _options.AttemptTimeout == Timeout.InfiniteTimeSpan
            ? new CancellationTokenSource()
            : new CancellationTokenSource(_options.AttemptTimeout, _time);
        using var attempt = CancellationTokenSource.CreateLinkedTokenSource(_abort, timeout.Token);

        Task write;
        try
        {
            write = _sink.WriteAsync(view, attempt.Token).AsTask();
        }
        catch (Exception e)
        {
            view.Release();
            if (e is OperationCanceledException && _abort.IsCancellationRequested)
            {
                throw;
            }

            return e;
        }

        if (!write.IsCompleted)
        {
            _ = write.ContinueWith(static (t, v) => { _ = t.Exception; ((WindowBatch)v!).Release(); }, view, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
        else
        {
            view.Release();
        }

        try
        {
            await write.WaitAsync(attempt.Token).ConfigureAwait(false);
            return null;
        }
        catch (OperationCanceledException) when (_abort.IsCancellationRequested)
        {
            throw;
        }
        catch (OperationCanceledException) when (attempt.IsCancellationRequested)
        {
            Interlocked.Increment(ref _timeouts);
            return new TimeoutException($"The write to sink '{_sink.Name}' did not finish within {_options.AttemptTimeout.TotalSeconds:0.###} s.");
        }
        catch (Exception e)
        {
            return e;
        }
    }

    /// <summary>A queued batch dropped to make room (the channel's drop-oldest, or the byte bound's).</summary>
    private void Dropped(WindowBatch batch)
    {
        ReleaseBytes(batch);
        Volatile.Write(ref _lastDropTimestamp, _time.GetTimestamp());
        Interlocked.Increment(ref _batchesDropped);
        Interlocked.Add(ref _pointsDropped, batch.Points);
        batch.CompleteOutcome(abandoned: false);
    }

    private void Abandon(WindowBatch batch)
    {
        Interlocked.Increment(ref _batchesAbandoned);
        Interlocked.Add(ref _pointsAbandoned, batch.Points);
        batch.CompleteOutcome(abandoned: true);
    }

    private void RecordError(Exception e)
    {
        Interlocked.Increment(ref _errors);
        Volatile.Write(ref _lastError, $"{e.GetType().Name}: {e.Message}");
    }
}
