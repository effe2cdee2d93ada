using Monitoring.Stream.Kafka.Source;

namespace Monitoring.Stream.Kafka.Tests.Kafka;

public class CommitSegmentsTests
{
    [Fact]
    public void RangesOf_BatchesBeforeAndAfterACut_EachGetsItsOwnSegment()
    {
        var segments = new CommitSegments();
        segments.OnRead(0, 5);
        segments.OnRead(0, 9);
        segments.OnRead(1, 3);
        segments.Seal(new Dictionary<int, long> { [0] = 10, [1] = 4 }, [7, 2]);
        segments.OnRead(0, 10);

        // Shard 0's batch 7 was emitted by the cut; its batch 8 came after it.
        Assert.Equal([(0, (5L, 9L)), (1, (3L, 3L))], segments.RangesOf(0, 7).Select(r => (r.Key, r.Value)));
        Assert.Equal([(0, (10L, 10L)), (1, (4L, 3L))], segments.RangesOf(0, 8).Select(r => (r.Key, r.Value)));
        Assert.Equal([(0, (10L, 10L)), (1, (4L, 3L))], segments.RangesOf(1, 3).Select(r => (r.Key, r.Value)));
    }

    [Fact]
    public void TakeCommittable_OnePartitionBehind_CommitsOnlyTheSegmentEveryPartitionFinished()
    {
        var segments = new CommitSegments();
        segments.OnRead(0, 0);
        segments.OnRead(1, 0);
        segments.Seal(new Dictionary<int, long> { [0] = 1, [1] = 1 }, [1]);
        segments.OnRead(0, 1);
        segments.OnRead(1, 1);
        segments.Seal(new Dictionary<int, long> { [0] = 2, [1] = 2 }, [2]);

        // Partition 1 is acknowledged through offset 0 only: the second segment waits, whole, even though partition 0 is done.
        var acked = new Dictionary<int, long> { [0] = 1, [1] = 0 };
        Assert.Equal(new Dictionary<int, long> { [0] = 1, [1] = 1 }, segments.TakeCommittable(p => acked[p]));
        Assert.Equal(1, segments.SealedCount);
        Assert.Null(segments.TakeCommittable(p => acked[p]));

        // A partition no longer held does not hold the segment back.
        Assert.Equal(new Dictionary<int, long> { [0] = 2, [1] = 2 }, segments.TakeCommittable(p => p == 1 ? null : acked[p]));
        Assert.Equal(0, segments.SealedCount);
    }

    [Fact]
    public void Forget_PartitionGivenUpWithItsSegmentUncommitted_NeverCommittedFromItLater()
    {
        var segments = new CommitSegments();
        segments.OnRead(0, 4);
        segments.OnRead(1, 4);
        segments.Seal(new Dictionary<int, long> { [0] = 5, [1] = 5 }, [3]);

        // Partition 0 leaves before its segment is committed (a revoke that timed out); it comes back much later,
        // after another instance committed it at 8, and everything of it is acknowledged.
        segments.Forget(0);

        // Its range stays, for the batches of that segment still to be written.
        Assert.Contains(segments.RangesOf(0, 3), r => r.Key == 0);
        var acked = new Dictionary<int, long> { [0] = 20, [1] = 4 };
        IReadOnlyDictionary<int, long>? cut = segments.TakeCommittable(p => acked[p]);
        Assert.NotNull(cut);
        Assert.Equal(new Dictionary<int, long> { [1] = 5 }, cut);
    }
}
