using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.ObjectPool;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Ingest;

/// <summary>
/// A producer's entrance to the pipeline. One writer belongs to one thread: it batches points per
/// shard in pooled buffers and hands each full batch to the shard's bounded channel in one operation.
/// </summary>
/// <remarks>
/// Not thread-safe: give each producing thread its own writer (<see cref="MetricsPipeline.CreateWriter"/>).
/// Points sit in the writer's buffers until a batch fills, <see cref="Flush"/> is called, or a
/// write notices the flush interval has passed; an idle producer should call <see cref="Flush"/>.
/// </remarks>
public sealed class PointWriter : IDisposable
{
    private const int ClockCheckEvery = 1024;

    /// <summary>Spins (mostly yields) on a full shard before sleeping between tries: a few milliseconds.</summary>
    private const int MaxYieldingSpins = 4000;

    private readonly MetricsPipeline _pipeline;
    private readonly ChannelWriter<PointBatch>[] _channels;
    private readonly ObjectPool<PointBatch> _pool;
    private readonly PointBatch?[] _pending;
    private readonly int _shardCount;
    private readonly ulong _shardDivisor;
    private readonly TimeProvider _time;
    private readonly long _maxFutureSkewMs;
    private readonly long _flushIntervalTicks;
    private readonly SourceCounters _counters;
    private readonly int _sourceIndex;
    private long _maxTimestamp;
    private long _lastFlush;
    private int _sinceClockCheck;
    private bool _disposed;

    internal PointWriter(MetricsPipeline pipeline, string source, int sourceIndex, BackpressureMode mode, SourceCounters counters)
    {
        _pipeline = pipeline;
        _channels = pipeline.ShardWriters;
        _pool = pipeline.BatchPool;
        _shardCount = _channels.Length;
        // Lemire's fast division: q = high64(ceil(2^64 / d) * n) is exact for 32-bit n and d > 1.
        // For d = 1 the multiplier would be 2^64, which does not fit: 0 marks that case.
        _shardDivisor = _shardCount == 1 ? 0 : (ulong.MaxValue / (ulong)_shardCount) + 1;
        _pending = new PointBatch?[_shardCount];
        _time = pipeline.Options.TimeProvider;
        _maxFutureSkewMs = (long)pipeline.Options.MaxFutureSkew.TotalMilliseconds;
        _flushIntervalTicks = (long)(pipeline.Options.ProducerFlushInterval.TotalSeconds * _time.TimestampFrequency);
        Source = source;
        Mode = mode;
        _counters = counters;
        _sourceIndex = sourceIndex;
        RefreshClock();
    }

    /// <summary>The source name under which this writer's points are counted.</summary>
    public string Source { get; }

    /// <summary>What this writer does when a shard is full.</summary>
    public BackpressureMode Mode { get; }

    /// <summary>Resolves the series and writes one point.</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the point was refused (also counted).</returns>
    public RejectReason Write(string metric, ReadOnlySpan<Label> labels, double value, long timestampUnixMs)
    {
        RejectReason reason = _pipeline.Registry.TryGetOrAdd(metric, labels, out SeriesId id);
        if (reason != RejectReason.None)
        {
            _counters.Offered++;
            _counters.Rejected[(int)reason]++;
            return reason;
        }

        return Write(id, value, timestampUnixMs);
    }

    /// <summary>Writes one point of a series resolved earlier through the pipeline's registry.</summary>
    /// <returns><see cref="RejectReason.None"/>, or why the point was refused (also counted).</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public RejectReason Write(SeriesId series, double value, long timestampUnixMs)
    {
        _counters.Offered++;
        if (!double.IsFinite(value) || timestampUnixMs > _maxTimestamp || (uint)series.Value >= (uint)_pipeline.Registry.Count)
        {
            return WriteSlow(series, value, timestampUnixMs);
        }

        Append(series, value, timestampUnixMs);
        return RejectReason.None;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Append(SeriesId series, double value, long timestampUnixMs)
    {
        uint id = (uint)series.Value;
        uint slot = _shardDivisor == 0 ? id : (uint)Math.BigMul(_shardDivisor, id, out _);
        int shard = (int)(id - (slot * (uint)_shardCount));
        PointBatch batch = _pending[shard] ?? RentFor(shard);
        ref IngestPoint point = ref batch.Points[batch.Count++];
        point.Slot = (int)slot;
        point.Value = value;
        point.TimestampUnixMs = timestampUnixMs;
        if (batch.IsFull)
        {
            FlushShard(shard);
        }
        else if (++_sinceClockCheck >= ClockCheckEvery)
        {
            CheckClock();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private RejectReason WriteSlow(SeriesId series, double value, long timestampUnixMs)
    {
        RejectReason reason = PointValidator.ValidateValue(value);
        if (reason == RejectReason.None && (uint)series.Value >= (uint)_pipeline.Registry.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(series), series, "The series id was not issued by this pipeline's registry.");
        }

        if (reason == RejectReason.None && timestampUnixMs > _maxTimestamp)
        {
            // The cached bound may be stale: look at the clock before refusing.
            RefreshClock();
            if (timestampUnixMs > _maxTimestamp)
            {
                reason = RejectReason.TimestampOutOfRange;
            }
        }

        if (reason != RejectReason.None)
        {
            _counters.Rejected[(int)reason]++;
            return reason;
        }

        Append(series, value, timestampUnixMs);
        return RejectReason.None;
    }

    private PointBatch RentFor(int shard)
    {
        PointBatch batch = _pool.Get();
        batch.Source = _sourceIndex;
        _pending[shard] = batch;
        return batch;
    }

    private void CheckClock()
    {
        _sinceClockCheck = 0;
        RefreshClock();
        if (_time.GetTimestamp() - _lastFlush >= _flushIntervalTicks)
        {
            Flush();
        }
    }

    private void RefreshClock() => _maxTimestamp = _time.GetUtcNow().ToUnixTimeMilliseconds() + _maxFutureSkewMs;

    /// <summary>Hands every partly filled batch to its shard.</summary>
    public void Flush()
    {
        for (int shard = 0; shard < _pending.Length; shard++)
        {
            FlushShard(shard);
        }

        _lastFlush = _time.GetTimestamp();
    }

    private void FlushShard(int shard)
    {
        PointBatch? batch = _pending[shard];
        if (batch is null)
        {
            return;
        }

        _pending[shard] = null;
        int count = batch.Count;
        if (count == 0)
        {
            _pool.Return(batch);
            return;
        }

        if (_pipeline.IsStopping)
        {
            Drop(batch, DropReason.PipelineStopped);
            return;
        }

        if (_channels[shard].TryWrite(batch))
        {
            _counters.Accepted += count;
            return;
        }

        if (Mode == BackpressureMode.DropNewest)
        {
            Drop(batch, _pipeline.IsStopping ? DropReason.PipelineStopped : DropReason.QueueFull);
            return;
        }

        WaitAndWrite(shard, batch);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WaitAndWrite(int shard, PointBatch batch)
    {
        int count = batch.Count;
        ChannelWriter<PointBatch> channel = _channels[shard];
        // The producer chose Wait: hold this thread until the shard has room. A full shard usually
        // frees a slot within microseconds, so this spins and yields the core (to the shard, on a
        // machine with fewer cores than threads) for a few milliseconds, and only then escalates to
        // 1 ms sleeps, so that a shard stalled for long costs no CPU. Sleeping early cost a third of
        // the throughput at 1,000 series on 2 cores. The channel's blocking write is not used: its
        // waiter object would be the one allocation a producer makes in steady state.
        var spinner = default(SpinWait);
        int spins = 0;
        while (!channel.TryWrite(batch))
        {
            if (_pipeline.IsStopping)
            {
                Drop(batch, DropReason.PipelineStopped);
                return;
            }

            if (spins < MaxYieldingSpins)
            {
                spins++;
                spinner.SpinOnce(sleep1Threshold: -1);
            }
            else
            {
                spinner.SpinOnce();
            }
        }

        _counters.Accepted += count;
    }

    private void Drop(PointBatch batch, DropReason reason)
    {
        _counters.Dropped[(int)reason] += batch.Count;
        _pool.Return(batch);
    }

    /// <summary>Flushes what is buffered; the writer's counters stay in the pipeline's totals.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        Flush();
    }
}
