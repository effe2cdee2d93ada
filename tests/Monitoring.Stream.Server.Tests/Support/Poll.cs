using System.Diagnostics;

namespace Monitoring.Stream.Server.Tests.Support;

/// <summary>Waits for a condition on a real signal, with a bound that fails the test.</summary>
internal static class Poll
{
    /// <summary>Calls <paramref name="probe"/> until it returns a value, failing with <paramref name="what"/> after <paramref name="timeout"/>.</summary>
    public static async Task<T> UntilAsync<T>(Func<Task<T?>> probe, TimeSpan timeout, string what)
        where T : class
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            T? value = await probe();
            if (value is not null)
            {
                return value;
            }

            if (clock.Elapsed > timeout)
            {
                Assert.Fail($"{what}: not within {timeout.TotalSeconds} s");
            }

            await Task.Delay(200);
        }
    }
}
