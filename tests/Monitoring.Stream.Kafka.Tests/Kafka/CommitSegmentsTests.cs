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
}
