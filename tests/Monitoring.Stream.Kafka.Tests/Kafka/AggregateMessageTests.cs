using Monitoring.Stream.Kafka.Aggregates;
using Monitoring.Stream.Kafka.Sink;

namespace Monitoring.Stream.Kafka.Tests.Kafka;

public class AggregateMessageTests
{
    private static AggregateMessage With(params SourceOffsetRange[] ranges) => new("i/0/0/1", 0, 0, [], ranges);

    [Fact]
    public void IsReadAgainAfter_RangesAgainstCommittedOffsets_DropsOnlyWhatEveryPartitionReadAgain()
    {
        var committed = new Dictionary<int, long> { [0] = 100, [1] = 50 };

        // Wholly at or above the commits: the next owner read all of it again.
        Assert.True(With(new("points", 0, 100, 120), new("points", 1, 50, 60)).IsReadAgainAfter("points", committed));

        // Below a commit on one partition: kept (with segments no message mixes the two).
        Assert.False(With(new("points", 0, 100, 120), new("points", 1, 40, 49)).IsReadAgainAfter("points", committed));

        // An empty range at the commit (nothing of that partition in the message) does not keep it.
        Assert.True(With(new("points", 0, 100, 99), new("points", 1, 55, 58)).IsReadAgainAfter("points", committed));

        // A partition never committed: the next owner starts at its beginning.
        Assert.True(With(new SourceOffsetRange("points", 2, 0, 10)).IsReadAgainAfter("points", committed));

        // Another topic's ranges, or none: origin unknown, kept.
        Assert.False(With(new SourceOffsetRange("other", 0, 500, 600)).IsReadAgainAfter("points", committed));
        Assert.False(With().IsReadAgainAfter("points", committed));
    }
}
