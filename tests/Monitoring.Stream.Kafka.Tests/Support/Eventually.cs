namespace Monitoring.Stream.Kafka.Tests.Support;

/// <summary>Waits on a condition with a bound that fails the test when it passes.</summary>
internal static class Eventually
{
    public static async Task True(Func<bool> condition, TimeSpan timeout, Func<string> describe)
    {
        using var expired = new CancellationTokenSource(timeout);
        while (!condition())
        {
            if (expired.IsCancellationRequested)
            {
                Assert.Fail($"not within {timeout.TotalSeconds} s: {describe()}");
            }

            await Task.Delay(20);
        }
    }
}
