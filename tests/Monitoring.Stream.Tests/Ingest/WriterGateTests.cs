using Monitoring.Stream.Ingest;

namespace Monitoring.Stream.Tests.Ingest;

/// <summary>The engine's waiting entry of a writer's gate: it waits for a call under way, and holds later calls off.</summary>
public class WriterGateTests
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(15);

    /// <summary>A gate in a class, so that threads share one (the gate is a struct held in a writer's field).</summary>
    private sealed class Holder
    {
        public WriterGate Gate = new();
    }

    [Fact]
    public void EnterEngine_CallerInside_WaitsForItsExitAndHoldsItsNextCallOff()
    {
        var holder = new Holder();
        using var inside = new ManualResetEventSlim();
        using var leave = new ManualResetEventSlim();
        using var secondEntered = new ManualResetEventSlim();
        using var engineEntered = new ManualResetEventSlim();
        bool firstEntered = false, secondResult = false;
        var caller = new Thread(() =>
        {
            // The first call takes the gate's lock and biases the gate to this thread; the second is a biased call.
            holder.Gate.Enter();
            holder.Gate.Exit();
            firstEntered = holder.Gate.Enter();
            inside.Set();
            leave.Wait(s_bound);
            holder.Gate.Exit();
            // The caller's next call while the engine holds the gate: it must wait for the engine.
            engineEntered.Wait(s_bound);
            secondResult = holder.Gate.Enter();
            secondEntered.Set();
            holder.Gate.Exit();
        });
        caller.Start();
        Assert.True(inside.Wait(s_bound), "the caller did not enter");
        Assert.True(firstEntered);

        bool engineResult = false;
        var engine = new Thread(() =>
        {
            engineResult = holder.Gate.EnterEngine(() => false);
            engineEntered.Set();
        });
        engine.Start();
        // A negative check needs some wait; it can only miss, never flake.
        Assert.False(engineEntered.Wait(200), "the engine entered while a call was under way");
        leave.Set();
        Assert.True(engineEntered.Wait(s_bound), "the engine did not enter once the call ended");
        Assert.True(engineResult);
        Assert.True(engine.Join(s_bound));
        Assert.False(secondEntered.Wait(200), "the caller entered again while the engine held the gate");

        holder.Gate.ExitEngine();
        Assert.True(secondEntered.Wait(s_bound), "the caller did not enter once the engine left");
        Assert.True(secondResult);
        Assert.True(caller.Join(s_bound));
    }

    [Fact]
    public void EnterEngine_GiveUpWhileACallIsUnderWay_ReturnsFalseAndTheCallerGoesOn()
    {
        var holder = new Holder();
        Assert.True(holder.Gate.Enter());
        int asked = 0;
        Assert.False(holder.Gate.EnterEngine(() => ++asked > 3));
        Assert.True(asked > 3);
        holder.Gate.Exit();
        // Nothing left behind: the caller enters again, and so does the engine once it has left.
        Assert.True(holder.Gate.Enter());
        holder.Gate.Exit();
        Assert.True(holder.Gate.EnterEngine(() => false));
        holder.Gate.ExitEngine();
        Assert.True(holder.Gate.Enter());
        holder.Gate.Exit();
    }
}
