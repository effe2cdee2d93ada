using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Server.Service;

/// <summary>
/// Decides whether an ingest request may write into the engine now, so that an HTTP request never waits on a full
/// shard queue: a request is admitted only when the fullest shard queue, plus what admitted requests may still add,
/// has room for everything it can hand over. Otherwise the service answers 503 (<c>saturated</c>).
/// </summary>
/// <remarks>
/// The engine's queue depths come from <see cref="MetricsPipeline.GetMetrics"/>, which is too costly to call per
/// request. The estimate is therefore the depth seen at the last look plus every batch written or reserved since,
/// as if all of them sat in the fullest queue: it can only overstate the fill. It is refreshed every 50 ms, and on
/// every request once the estimate passes half the saturation limit, so near saturation the answer is exact while
/// under normal load a look is taken about once per half a queue's worth of batches.
/// </remarks>
internal sealed class IngestAdmission
{
    private const long MaxAgeMs = 50;

    private readonly MetricsPipeline _pipeline;
    private readonly int _capacity;
    private readonly int _batchSize;
    private readonly int _shards;
    private readonly double _limit;
    private readonly int _share;
    private readonly Lock _gate = new();
    private long _refreshedAt = long.MinValue;
    private int _depth;
    private long _sinceRefresh;
    private long _reserved;

    /// <summary>
    /// Creates the admission for <paramref name="pipeline"/>, saturated at <paramref name="saturationFill"/> of a shard queue,
    /// for <paramref name="concurrency"/> requests at once.
    /// </summary>
    public IngestAdmission(MetricsPipeline pipeline, double saturationFill, int concurrency)
    {
        _pipeline = pipeline;
        _capacity = pipeline.Options.ShardQueueBatches;
        _batchSize = pipeline.Options.BatchSize;
        _shards = pipeline.Options.ShardCount;
        _limit = saturationFill * _capacity;
        _share = Math.Max(1, _capacity / Math.Max(1, concurrency));
    }

    /// <summary>The estimated fill of the fullest shard queue (0 to 1, or more while requests are being written).</summary>
    public double Fill
    {
        get
        {
            lock (_gate)
            {
                return Estimate / _capacity;
            }
        }
    }

    private double Estimate => _depth + _sinceRefresh + _reserved;

    /// <summary>
    /// The queue entries reserved for a request of <paramref name="points"/> points: the most it can add to one shard (its
    /// full batches, and one partial batch or progress mark per shard), but at most a fair share of a queue (capacity /
    /// concurrency), so that large requests do not shut each other out; the rest of a larger request may wait for the shards.
    /// </summary>
    public int BatchesFor(int points) => (int)Math.Min(_share, ((long)points + _batchSize - 1) / _batchSize + _shards);

    /// <summary>Whether the fullest shard queue is at the saturation limit (the quick check before a request is read).</summary>
    public bool IsSaturated()
    {
        lock (_gate)
        {
            if (Environment.TickCount64 - _refreshedAt >= MaxAgeMs || Estimate > _limit / 2)
            {
                Refresh();
            }

            return Estimate >= _limit;
        }
    }

    /// <summary>
    /// Reserves room for <paramref name="batches"/> queue entries; false when the fullest queue is at the saturation
    /// limit, or has no room for them all (unless it is empty: a request larger than a whole queue waits for the shards).
    /// </summary>
    public bool TryReserve(int batches)
    {
        lock (_gate)
        {
            if (Environment.TickCount64 - _refreshedAt >= MaxAgeMs || Estimate + batches > _limit / 2)
            {
                Refresh();
            }

            double estimate = Estimate;
            if (estimate >= _limit || (estimate > 0 && estimate + batches > _capacity))
            {
                return false;
            }

            _reserved += batches;
            return true;
        }
    }

    /// <summary>Ends a reservation: its batches count as written until the next look at the queues.</summary>
    public void Complete(int batches)
    {
        lock (_gate)
        {
            _reserved -= batches;
            _sinceRefresh += batches;
        }
    }

    private void Refresh()
    {
        PipelineMetrics m = _pipeline.GetMetrics();
        int depth = 0;
        foreach (int d in m.ShardQueueDepth)
        {
            depth = Math.Max(depth, d);
        }

        _depth = depth;
        _sinceRefresh = 0;
        _refreshedAt = Environment.TickCount64;
    }
}
