using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Tests.BlackBox;

/// <summary>
/// The accounting identities exactly as docs/event-time.md and PipelineMetrics state them, stale points included:
/// offered = accepted + rejected + dropped + pending and accepted = emitted + late + open + queued + faulted + stale,
/// with every remainder non-negative and the per-source counters adding up to the totals.
/// </summary>
internal static class BlackBoxAccounting
{
    /// <summary>Holds at any moment of a run.</summary>
    public static void AssertIdentities(PipelineMetrics m)
    {
        Assert.True(m.Pending >= 0, $"pending {m.Pending} < 0");
        Assert.True(m.Queued >= 0, $"queued {m.Queued} < 0");
        Assert.True(m.OpenWindowPoints >= 0, $"open {m.OpenWindowPoints} < 0");
        Assert.True(m.Late >= 0 && m.EmittedPoints >= 0 && m.FaultedPoints >= 0 && m.StalePoints >= 0, "a counter is negative");
        Assert.Equal(m.Offered, m.Accepted + m.Rejected + m.Dropped + m.Pending);
        Assert.Equal(m.Accepted, m.EmittedPoints + m.Late + m.OpenWindowPoints + m.Queued + m.FaultedPoints + m.StalePoints);
        Assert.Equal(m.Offered, m.Sources.Sum(s => s.Offered));
        Assert.Equal(m.Accepted, m.Sources.Sum(s => s.Accepted));
        Assert.Equal(m.Rejected, m.Sources.Sum(s => s.Rejected));
        Assert.Equal(m.Dropped, m.Sources.Sum(s => s.Dropped));
        Assert.Equal(m.Late, m.Sources.Sum(s => s.Late));
        Assert.Equal(m.Late, m.LateByMetric.Values.Sum());
    }

    /// <summary>After a graceful stop: nothing pending, queued or open, and each emitted window in exactly one sink counter.</summary>
    public static void AssertStoppedGracefully(PipelineMetrics m)
    {
        AssertIdentities(m);
        Assert.Equal(PipelineState.Stopped, m.State);
        Assert.Equal(0, m.Pending);
        Assert.Equal(0, m.Queued);
        Assert.Equal(0, m.OpenWindowPoints);
        foreach (SinkMetrics s in m.Sinks)
        {
            Assert.Equal(0, s.QueueDepth);
            Assert.Equal(0, s.BatchesAbandoned);
            Assert.Equal(m.WindowsEmitted, s.BatchesWritten + s.BatchesFailed + s.BatchesDropped + s.BatchesAbandoned);
            Assert.Equal(m.EmittedPoints, s.PointsWritten + s.PointsFailed + s.PointsDropped + s.PointsAbandoned);
        }
    }
}
