using System.Text;
using Monitoring.Stream.Kafka.WireFormat;

namespace Monitoring.Stream.Kafka.Tests.WireFormat;

public class ByteKeyTableTests
{
    private static byte[] Key(int i) => Encoding.UTF8.GetBytes(new string('k', i % 40) + i);

    [Fact]
    public void TryGetValue_TenThousandKeysAddedPastEveryInitialSize_EachFoundWithItsValue()
    {
        var table = new ByteKeyTable<int>();
        for (int i = 0; i < 10_000; i++)
        {
            Assert.False(table.TryGetValue(Key(i), out _));
            table.Add(Key(i), i * 3);
        }

        Assert.Equal(10_000, table.Count);
        for (int i = 0; i < 10_000; i++)
        {
            Assert.True(table.TryGetValue(Key(i), out int value));
            Assert.Equal(i * 3, value);
        }

        Assert.False(table.TryGetValue(Key(10_000), out _));
        Assert.False(table.TryGetValue([], out _));
        Assert.False(table.TryGetValue(Key(5).AsSpan(0, Key(5).Length - 1), out _));
    }

    [Fact]
    public void Clear_AfterKeys_NoneFoundAndNewValuesStored()
    {
        var table = new ByteKeyTable<int>();
        table.Add([], 7);
        for (int i = 0; i < 500; i++)
        {
            table.Add(Key(i), i);
        }

        Assert.True(table.TryGetValue([], out int empty));
        Assert.Equal(7, empty);
        table.Clear();
        Assert.Equal(0, table.Count);
        Assert.False(table.TryGetValue(Key(1), out _));
        Assert.False(table.TryGetValue([], out _));
        table.Add(Key(1), 42);
        Assert.True(table.TryGetValue(Key(1), out int value));
        Assert.Equal(42, value);
        Assert.False(table.TryGetValue(Key(2), out _));
    }
}
