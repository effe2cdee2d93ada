using System.Diagnostics;
using System.Threading.Channels;
using Monitoring.Stream.Ingest;

namespace Monitoring.Stream.Tests.Ingest;

public class ShardSpaceTests
{
    private static Channel<PointBatch> FullChannel(int capacity)
    {
        var channel = Channel.CreateBounded<PointBatch>(new BoundedChannelOptions(capacity) { SingleReader = true });
        for (int i = 0; i < capacity; i++)
        {
            Assert.True(channel.Writer.TryWrite(new PointBatch(1)));
        }

        return channel;
    }

    [Fact]
    public void TryWriteOrSleep_FullQueueNobodyTakes_ReturnsFalseAfterBoundedSleepAndLeavesNoWaiter()
    {
        Channel<PointBatch> channel = FullChannel(4);
        var space = new ShardSpace(4);

        var watch = Stopwatch.StartNew();
        bool written = space.TryWriteOrSleep(channel.Writer, new PointBatch(1));

        Assert.False(written);
        Assert.True(watch.ElapsedMilliseconds < 2_000, $"one sleep lasted {watch.ElapsedMilliseconds} ms");
        Assert.Equal(0, space.Waiters);
        Assert.Equal(4, channel.Reader.Count);
    }

    [Fact]
    public void TryWriteOrSleep_ShardTakesDownToHalf_SleepingWriterWritesAndNothingIsLost()
    {
        Channel<PointBatch> channel = FullChannel(4);
        var space = new ShardSpace(4);
        var mine = new PointBatch(1);
        int tries = 0;
        var writer = new Thread(() =>
        {
            while (!space.TryWriteOrSleep(channel.Writer, mine))
            {
                Interlocked.Increment(ref tries);
            }
        });
        writer.Start();

        // The writer is counted as waiting before it sleeps.
        var watch = Stopwatch.StartNew();
        while (space.Waiters == 0)
        {
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), "the writer never waited");
            Thread.Yield();
        }

        // The shard takes one batch: three left, more than half: no wake-up is owed yet, but the room is there.
        Assert.True(channel.Reader.TryRead(out _));
        space.OnTaken(channel.Reader);
        Assert.True(channel.Reader.TryRead(out _));
        space.OnTaken(channel.Reader);

        Assert.True(writer.Join(TimeSpan.FromSeconds(10)), "the writer did not get the room");
        Assert.Equal(0, space.Waiters);
        var left = new List<PointBatch>();
        while (channel.Reader.TryRead(out PointBatch? b))
        {
            left.Add(b);
        }

        Assert.Equal(3, left.Count);
        Assert.Same(mine, left[^1]);
    }
}
