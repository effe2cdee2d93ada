using System.Runtime.InteropServices;
using Microsoft.Extensions.Hosting;

namespace Monitoring.Stream.Server.Service;

/// <summary>
/// The service's own answer to SIGINT and SIGTERM (instead of the console lifetime's): the first signal
/// stops gracefully (open windows emitted into every sink, sinks completed, offsets committed); the second
/// cancels <see cref="Abort"/>, which makes the stop forced (what is left is abandoned and counted); a third
/// ends the process at once.
/// </summary>
internal sealed class SignalLifetime(IHostApplicationLifetime lifetime) : IHostLifetime, IDisposable
{
    private readonly CancellationTokenSource _abort = new();
    private readonly List<PosixSignalRegistration> _registrations = [];
    private int _signals;
    private long _firstSignalAt;

    /// <summary>Cancelled by the second signal.</summary>
    public CancellationToken Abort => _abort.Token;

    /// <inheritdoc />
    public Task WaitForStartAsync(CancellationToken cancellationToken)
    {
        _registrations.Add(PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal));
        _registrations.Add(PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal));
        return Task.CompletedTask;
    }

    private void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true;
        // A signal repeated within 300 ms is the same request (timeout(1) and some supervisors signal the
        // process and then its group): only a second, deliberate signal stops at once.
        if (Volatile.Read(ref _signals) == 1 && Environment.TickCount64 - Volatile.Read(ref _firstSignalAt) < 300)
        {
            return;
        }

        Volatile.Write(ref _firstSignalAt, Environment.TickCount64);
        switch (Interlocked.Increment(ref _signals))
        {
            case 1:
                Console.WriteLine($"monitoring-stream: {context.Signal}: stopping gracefully (open windows go to the store; send it again to stop at once)");
                lifetime.StopApplication();
                break;
            case 2:
                Console.WriteLine($"monitoring-stream: {context.Signal} again: stopping at once (what is left is abandoned and counted)");
                _abort.Cancel();
                break;
            default:
                Console.WriteLine($"monitoring-stream: {context.Signal} a third time: exiting now");
                Environment.Exit(130);
                break;
        }
    }

    /// <inheritdoc />
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (PosixSignalRegistration registration in _registrations)
        {
            registration.Dispose();
        }

        _abort.Dispose();
    }
}
