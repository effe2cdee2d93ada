using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.ObjectPool;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Series;

namespace Monitoring.Stream.Windows;

/// <summary>
/// The single consumer of one shard's channel. It owns the window states of its series (those with
/// <c>id % shardCount == index</c>, at slot <c>id / shardCount</c>), so aggregation takes no lock.
/// </summary>
/// <remarks>
/// Windows are tumbling and aligned to the epoch. The watermark is the largest event time seen minus
/// the allowed lateness; a tick with no data since the previous tick raises it to the clock minus the
/// lateness. A window closes once the watermark reaches its end; a point whose window has closed is
/// late, and counted per metric.
/// </remarks>
internal sealed class ShardAggregator
{
    private readonly int _index;
    private readonly int _shardCount;
    private readonly ChannelReader<PointBatch> _reader;
    private readonly ObjectPool<PointBatch> _pool;
    private readonly SeriesRegistry _registry;
    private readonly TimeProvider _time;
    private readonly long _windowMs;
    private readonly long _latenessMs;
    private readonly bool _withSketches;
    private readonly double _relativeAccuracy;
    private readonly int _maxBins;
    private readonly Func<WindowBuffer, int, ValueTask> _emit;
    private readonly ConcurrentDictionary<string, long> _lateByMetric;
    private readonly List<WindowBuffer> _open = [];
    private readonly Stack<WindowBuffer> _free = new();
    private WindowBuffer? _current;
    private long _maxEventTime = long.MinValue;
    private long _watermark = long.MinValue;
    private bool _dataSinceTick;
    private long _openBytes;
    private ShardCounters _counters;

    public ShardAggregator(
        int index,
        int shardCount,
        ChannelReader<PointBatch> reader,
        ObjectPool<PointBatch> pool,
        SeriesRegistry registry,
        MetricsPipelineSettings settings,
        ConcurrentDictionary<string, long> lateByMetric,
        Func<WindowBuffer, int, ValueTask> emit)
    {
        _index = index;
        _shardCount = shardCount;
        _reader = reader;
        _pool = pool;
        _registry = registry;
        _time = settings.TimeProvider;
        _windowMs = settings.WindowMs;
        _latenessMs = settings.LatenessMs;
        _withSketches = settings.Sketches;
        _relativeAccuracy = settings.RelativeAccuracy;
        _maxBins = settings.MaxBins;
        _lateByMetric = lateByMetric;
        _emit = emit;
    }

    public long Aggregated => Volatile.Read(ref _counters.Aggregated);

    public long Late => Volatile.Read(ref _counters.Late);

    public long EmittedPoints => Volatile.Read(ref _counters.EmittedPoints);

    public long WindowsEmitted => Volatile.Read(ref _counters.WindowsEmitted);

    public long Watermark => Volatile.Read(ref _watermark);

    /// <summary>Bytes held by the open windows' states, as of the last batch.</summary>
    public long OpenStateBytes => Volatile.Read(ref _openBytes);

    public async Task RunAsync()
    {
        while (await _reader.WaitToReadAsync().ConfigureAwait(false))
        {
            while (_reader.TryRead(out PointBatch? batch))
            {
                switch (batch.Kind)
                {
                    case BatchKind.Points:
                        Aggregate(batch);
                        _pool.Return(batch);
                        await CloseDueAsync().ConfigureAwait(false);
                        break;
                    case BatchKind.Tick:
                        OnTick();
                        await CloseDueAsync().ConfigureAwait(false);
                        break;
                    case BatchKind.Barrier:
                        batch.Barrier?.TrySetResult();
                        break;
                }
            }
        }

        // The channel is complete: the pipeline is stopping, so every open window goes out now.
        while (_open.Count > 0)
        {
            await EmitOldestAsync().ConfigureAwait(false);
        }
    }

    private void Aggregate(PointBatch batch)
    {
        long aggregated = 0;
        long maxEventTime = _maxEventTime;
        WindowBuffer? window = _current;
        ReadOnlySpan<IngestPoint> points = batch.Points.AsSpan(0, batch.Count);
        for (int k = 0; k < points.Length; k++)
        {
            ref readonly IngestPoint point = ref points[k];
            if (window is not null)
            {
                // PERF: with many series every point misses the caches on its window state and
                // sketch; asking for them a few points ahead overlaps those misses.
                PrefetchAhead(window, points, k);
            }

            long ts = point.TimestampUnixMs;
            // PERF: most points fall in the window of the point before; only the others pay for
            // a division and a search.
            if (window is null || ts < window.Start || ts >= window.End)
            {
                window = SelectWindow(ts);
                if (window is null)
                {
                    CountLate(point.Slot);
                    continue;
                }

                _current = window;
            }

            if (point.Slot >= window.Capacity)
            {
                window.Grow(point.Slot + 1);
            }

            window.Add(point.Slot, point.Value, ts);
            aggregated++;
            if (ts > maxEventTime)
            {
                maxEventTime = ts;
            }
        }

        _maxEventTime = maxEventTime;
        _dataSinceTick = true;
        Volatile.Write(ref _counters.Aggregated, _counters.Aggregated + aggregated);
        if (maxEventTime - _latenessMs > _watermark)
        {
            Volatile.Write(ref _watermark, maxEventTime - _latenessMs);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchAhead(WindowBuffer window, ReadOnlySpan<IngestPoint> points, int k)
    {
        if (k + 8 < points.Length)
        {
            int slot = points[k + 8].Slot;
            if ((uint)slot < (uint)window.Capacity)
            {
                Prefetch.Element(window.Moments, slot);
                if (window.Sketches.Length > 0)
                {
                    Prefetch.Object(window.Sketches[slot]);
                }
            }
        }

    }

    /// <summary>The open window for <paramref name="ts"/>, opening it if needed, or null when it has closed.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private WindowBuffer? SelectWindow(long ts)
    {
        long remainder = ts % _windowMs;
        long start = ts - (remainder < 0 ? remainder + _windowMs : remainder);
        long end = start + _windowMs;
        if (end <= _watermark)
        {
            return null;
        }

        int i = 0;
        for (; i < _open.Count; i++)
        {
            if (_open[i].Start == start)
            {
                return _open[i];
            }

            if (_open[i].Start > start)
            {
                break;
            }
        }

        WindowBuffer window = _free.Count > 0
            ? _free.Pop()
            : new WindowBuffer(Math.Max(64, _registry.Count / _shardCount + 1), _withSketches, _relativeAccuracy, _maxBins);
        window.Start = start;
        window.End = end;
        _open.Insert(i, window);
        return window;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void CountLate(int slot)
    {
        Volatile.Write(ref _counters.Late, _counters.Late + 1);
        string metric = _registry.GetDescriptor(new SeriesId((slot * _shardCount) + _index)).Metric;
        _lateByMetric.AddOrUpdate(metric, 1, static (_, n) => n + 1);
    }

    private void OnTick()
    {
        if (!_dataSinceTick)
        {
            long clockWatermark = _time.GetUtcNow().ToUnixTimeMilliseconds() - _latenessMs;
            if (clockWatermark > _watermark)
            {
                Volatile.Write(ref _watermark, clockWatermark);
            }
        }

        _dataSinceTick = false;
        long bytes = 0;
        foreach (WindowBuffer w in _open)
        {
            bytes += w.EstimateBytes();
        }

        Volatile.Write(ref _openBytes, bytes);
    }

    private async ValueTask CloseDueAsync()
    {
        while (_open.Count > 0 && _open[0].End <= _watermark)
        {
            await EmitOldestAsync().ConfigureAwait(false);
        }
    }

    private async ValueTask EmitOldestAsync()
    {
        WindowBuffer window = _open[0];
        _open.RemoveAt(0);
        if (ReferenceEquals(window, _current))
        {
            _current = null;
        }

        if (window.TouchedCount > 0)
        {
            await _emit(window, _index).ConfigureAwait(false);
            Volatile.Write(ref _counters.EmittedPoints, _counters.EmittedPoints + window.Points);
            Volatile.Write(ref _counters.WindowsEmitted, _counters.WindowsEmitted + 1);
        }

        window.Reset();
        _free.Push(window);
    }
}
