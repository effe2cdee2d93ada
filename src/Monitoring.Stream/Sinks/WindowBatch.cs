using Apache.Arrow;

namespace Monitoring.Stream.Sinks;

/// <summary>
/// One closed window of one shard, as Arrow, handed to every sink. Its columns live in pooled memory
/// that the Arrow buffers own: the pipeline disposes its batch once every sink is done with it, and the
/// memory goes back to the pool when no batch shares it any more.
/// </summary>
/// <remarks>
/// A sink reads the batch during <see cref="IWindowSink.WriteAsync"/>. A sink that needs it afterwards
/// (a queue of its own, a background upload) calls <see cref="Retain"/> before returning and disposes
/// what it got when done: the retained batch shares the memory, copying nothing. Reading the pipeline's
/// batch after <see cref="IWindowSink.WriteAsync"/> returned, without retaining it, throws
/// <see cref="ObjectDisposedException"/> once the pipeline has let it go.
/// </remarks>
public sealed class WindowBatch : IDisposable
{
    private readonly RecordBatch _batch;
    private readonly bool _retained;
    private readonly Action<WindowBatch, bool>? _onOutcomes;
    private int _pendingOutcomes;
    private int _abandoned;
    private int _disposed;

    internal WindowBatch(RecordBatch batch, long windowStartUnixMs, long windowEndUnixMs, int shard, string instance, long sequence, long points, Action<WindowBatch, bool>? onOutcomes = null)
        : this(batch, windowStartUnixMs, windowEndUnixMs, shard, instance, sequence, points, retained: false) => _onOutcomes = onOutcomes;

    private WindowBatch(RecordBatch batch, long windowStartUnixMs, long windowEndUnixMs, int shard, string instance, long sequence, long points, bool retained)
    {
        _batch = batch;
        _retained = retained;
        WindowStartUnixMs = windowStartUnixMs;
        WindowEndUnixMs = windowEndUnixMs;
        Shard = shard;
        Instance = instance;
        Sequence = sequence;
        Points = points;
    }

    /// <summary>One row per series with data in the window; its schema metadata names the window, shard, sequence and instance.</summary>
    /// <exception cref="ObjectDisposedException">The batch was let go: retain it to read it after <see cref="IWindowSink.WriteAsync"/>.</exception>
    public RecordBatch RecordBatch
    {
        get
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            return _batch;
        }
    }

    /// <summary>Inclusive window start, ms since the Unix epoch.</summary>
    public long WindowStartUnixMs { get; }

    /// <summary>Exclusive window end, ms since the Unix epoch.</summary>
    public long WindowEndUnixMs { get; }

    /// <summary>The shard that aggregated the window.</summary>
    public int Shard { get; }

    /// <summary>The engine instance that produced it.</summary>
    public string Instance { get; }

    /// <summary>
    /// The shard's emission sequence number, from 1. A window is emitted more than once only when a
    /// source asked for its windows to close early (a rebalance) and points for it came later: each
    /// emission is a partial aggregate to merge, and (instance, shard, window start, sequence) identifies it.
    /// </summary>
    public long Sequence { get; }

    /// <summary>A stable identity a downstream consumer can deduplicate on: <c>instance/shard/window start/sequence</c>.</summary>
    public string BatchId => $"{Instance}/{Shard}/{WindowStartUnixMs}/{Sequence}";

    /// <summary>Points aggregated into the window (the sum of the count column).</summary>
    public long Points { get; }

    /// <summary>Bytes the batch's columns hold (their arrays, not only what is written in them), as the sinks' queues count them.</summary>
    internal long Bytes { get; init; }

    /// <summary>
    /// The bytes every buffer of a record batch's columns holds, children included: a pooled column counts
    /// its whole array (power-of-two sizes, up to twice what is written), since that is the memory kept.
    /// </summary>
    internal static long ColumnBytes(RecordBatch batch)
    {
        long bytes = 0;
        foreach (IArrowArray column in batch.Arrays)
        {
            bytes += BufferBytes(column.Data);
        }

        return bytes;
    }

    private static long BufferBytes(Apache.Arrow.ArrayData data)
    {
        long bytes = 0;
        foreach (ArrowBuffer buffer in data.Buffers)
        {
            bytes += System.Runtime.InteropServices.MemoryMarshal.TryGetMemoryManager(buffer.Memory, out Monitoring.Stream.Arrow.PooledColumnMemory? pooled)
                ? pooled.Capacity
                : buffer.Length;
        }

        foreach (Apache.Arrow.ArrayData child in data.Children ?? [])
        {
            bytes += BufferBytes(child);
        }

        return bytes;
    }

    /// <summary>
    /// Keeps the batch readable after <see cref="IWindowSink.WriteAsync"/> returns: the result shares
    /// the columns' memory (no copy) and must be disposed by the caller when done.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The batch was already let go.</exception>
    public WindowBatch Retain()
    {
        RecordBatch shared = RecordBatch.SliceShared(0, _batch.Length);
        return new WindowBatch(shared, WindowStartUnixMs, WindowEndUnixMs, Shard, Instance, Sequence, Points, retained: true);
    }

    /// <summary>
    /// The view one sink's write gets: it shares the memory as <see cref="Retain"/> does, but it is the
    /// pipeline's (a sink's <see cref="Dispose"/> refuses it, as documented); the runner releases it once
    /// the write has really returned, so a write that outlives its timeout still reads valid memory.
    /// </summary>
    internal WindowBatch ShareWithSink()
    {
        RecordBatch shared = RecordBatch.SliceShared(0, _batch.Length);
        return new WindowBatch(shared, WindowStartUnixMs, WindowEndUnixMs, Shard, Instance, Sequence, Points, retained: false);
    }

    /// <summary>Disposes a batch obtained from <see cref="Retain"/>; the pipeline's own batch is disposed by the pipeline.</summary>
    /// <exception cref="InvalidOperationException">The batch is the pipeline's, not a retained one.</exception>
    public void Dispose()
    {
        if (!_retained)
        {
            throw new InvalidOperationException("This window batch belongs to the pipeline, which disposes it once every sink is done; dispose only batches returned by Retain().");
        }

        Release();
    }

    /// <summary>Sets how many sinks must report an outcome before the pipeline lets the batch go.</summary>
    internal void ExpectOutcomes(int sinks) => _pendingOutcomes = sinks;

    /// <summary>Whether some sink never got the batch because a stop was forced.</summary>
    internal bool WasAbandoned => Volatile.Read(ref _abandoned) != 0;

    /// <summary>One sink is done with the batch (written, failed, dropped or abandoned); the last one releases it.</summary>
    internal void CompleteOutcome(bool abandoned)
    {
        if (abandoned)
        {
            Volatile.Write(ref _abandoned, 1);
        }

        if (Interlocked.Decrement(ref _pendingOutcomes) == 0)
        {
            Release();
            _onOutcomes?.Invoke(this, WasAbandoned);
        }
    }

    /// <summary>Lets the batch go once (no sink, or the last outcome).</summary>
    internal void Release()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _batch.Dispose();
        }
    }
}
