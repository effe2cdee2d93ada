using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Tests.Hardening;

/// <summary>
/// The accounting identities of the docs. <see cref="PipelineMetrics.Pending"/> and <see cref="PipelineMetrics.Queued"/>
/// are remainders, so the identities only bite through the checks that the remainders are zero once the
/// engine is settled, and through the per-source and per-sink sums.
/// </summary>
internal static class Identities
{
    /// <summary>Holds at any moment: the remainders are never negative and the per-source counters add up to the totals.</summary>
    public static void AssertConsistent(PipelineMetrics m)
    {
        Assert.True(m.Pending >= 0, $"pending {m.Pending} < 0");
        Assert.True(m.Queued >= 0, $"queued {m.Queued} < 0");
        Assert.True(m.OpenWindowPoints >= 0, $"open {m.OpenWindowPoints} < 0");
        Assert.Equal(m.Offered, m.Accepted + m.Rejected + m.Dropped + m.Pending);
        Assert.Equal(m.Accepted, m.EmittedPoints + m.Late + m.OpenWindowPoints + m.Queued + m.FaultedPoints);
        Assert.Equal(m.Offered, m.Sources.Sum(s => s.Offered));
        Assert.Equal(m.Accepted, m.Sources.Sum(s => s.Accepted));
        Assert.Equal(m.Rejected, m.Sources.Sum(s => s.Rejected));
        Assert.Equal(m.Dropped, m.Sources.Sum(s => s.Dropped));
        Assert.Equal(m.Late, m.Sources.Sum(s => s.Late));
        Assert.Equal(m.Late, m.LateByMetric.Values.Sum());
        foreach (SourceMetrics s in m.Sources)
        {
            Assert.True(s.Offered >= s.Accepted + s.Rejected + s.Dropped, $"source {s.Source}: offered {s.Offered} < accounted");
        }
    }

    /// <summary>Every writer flushed or disposed and the shards drained: nothing pending, nothing queued.</summary>
    public static void AssertSettled(PipelineMetrics m)
    {
        AssertConsistent(m);
        Assert.Equal(0, m.Pending);
        Assert.Equal(0, m.Queued);
        Assert.All(m.ShardQueueDepth, d => Assert.Equal(0, d));
    }

    /// <summary>After a stop: nothing open, and each emitted window in exactly one of each sink's counters.</summary>
    public static void AssertStopped(PipelineMetrics m)
    {
        AssertSettled(m);
        Assert.Equal(PipelineState.Stopped, m.State);
        Assert.Equal(0, m.OpenWindowPoints);
        foreach (SinkMetrics s in m.Sinks)
        {
            Assert.Equal(0, s.QueueDepth);
            Assert.Equal(m.WindowsEmitted, s.BatchesWritten + s.BatchesFailed + s.BatchesDropped + s.BatchesAbandoned);
            Assert.Equal(m.EmittedPoints, s.PointsWritten + s.PointsFailed + s.PointsDropped + s.PointsAbandoned);
        }
    }
}
