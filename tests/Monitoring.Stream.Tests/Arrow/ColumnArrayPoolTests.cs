using Monitoring.Stream.Arrow;

namespace Monitoring.Stream.Tests.Arrow;

public class ColumnArrayPoolTests
{
    [Fact]
    public void Rent_ReturnedArray_ReusedAndCountedOnlyWhileOut()
    {
        var pool = new ColumnArrayPool();
        pool.Trim();
        byte[] first = pool.Rent(1000);
        Assert.Equal(1024, first.Length);
        Assert.Equal(1024, pool.RentedBytes);
        Assert.Equal(0, pool.PooledBytes);

        pool.Return(first);
        Assert.Equal(0, pool.RentedBytes);
        Assert.Equal(1024, pool.PooledBytes);

        Assert.Same(first, pool.Rent(600));
        Assert.Equal(1024, pool.RentedBytes);
        Assert.Equal(0, pool.PooledBytes);
    }

    [Fact]
    public void Return_BeyondCap_ArrayLeftToCollector()
    {
        var pool = new ColumnArrayPool();
        pool.Trim();
        byte[][] arrays = [.. Enumerable.Range(0, 4).Select(_ => pool.Rent(512 * 1024))];
        Assert.Equal(2L << 20, pool.RentedBytes);
        foreach (byte[] array in arrays)
        {
            pool.Return(array);
        }

        // No earlier window set a larger cap: the floor (1 MiB) keeps two of the four.
        Assert.Equal(ColumnArrayPool.MinPooledBytes, pool.MaxPooledBytes);
        Assert.Equal(1L << 20, pool.PooledBytes);
        Assert.Equal(0, pool.RentedBytes);
    }

    [Fact]
    public void Trim_AfterABurstOfLargeWindows_CapFollowsRecentWindowsAndBurstArraysGo()
    {
        var pool = new ColumnArrayPool();
        for (int burst = 0; burst < 2; burst++)
        {
            pool.Trim();
            byte[][] columns = [.. Enumerable.Range(0, 8).Select(_ => pool.Rent(2 << 20))];
            foreach (byte[] column in columns)
            {
                pool.Return(column);
            }
        }

        // The second burst window found the cap the first one set (16 MiB) and its arrays stayed pooled.
        Assert.Equal(16L << 20, pool.PooledBytes);

        for (int window = 0; window < ColumnArrayPool.RecentWindows + 1; window++)
        {
            pool.Trim();
            byte[] small = pool.Rent(64 * 1024);
            pool.Return(small);
            Assert.True(pool.PooledBytes <= pool.MaxPooledBytes, $"{pool.PooledBytes} pooled over a cap of {pool.MaxPooledBytes}");
        }

        // Eight small windows later the burst is forgotten: the cap is back at its floor, the 2 MiB arrays are gone.
        Assert.Equal(ColumnArrayPool.MinPooledBytes, pool.MaxPooledBytes);
        Assert.Equal(64 * 1024, pool.PooledBytes);
        Assert.Equal(0, pool.RentedBytes);
    }

    [Fact]
    public void Return_ArrayNotFromThePool_Throws()
    {
        var pool = new ColumnArrayPool();
        Assert.Throws<ArgumentException>(() => pool.Return(new byte[1000]));
    }
}
