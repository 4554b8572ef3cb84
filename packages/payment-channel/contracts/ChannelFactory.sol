// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @dev The two ERC-20 calls the factory makes.
interface IERC20Minimal {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/// @title ChannelFactory
/// @notice Unidirectional payment channels, all held by this one contract.
/// A sender deposits native coin (token == address(0)) or an ERC-20 token for a
/// recipient. The sender then pays off-chain with cumulative claims: EIP-191
/// personal_sign over keccak256(abi.encodePacked(channelId, claimAmount, nonce)).
/// Before `expiration` the recipient closes the channel with its best claim and
/// takes claimAmount; the rest goes back to the sender. From `expiration` on,
/// anyone may expire the channel, which refunds the whole balance to the sender.
contract ChannelFactory {
    struct Channel {
        address sender;
        address recipient;
        address token;
        uint256 balance;
        uint256 highestNonce;
        uint256 expiration;
        bool isClosed;
    }

    /// @dev secp256k1n / 2: signatures with a larger s are rejected (EIP-2).
    uint256 private constant HALF_CURVE_ORDER =
        0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    mapping(bytes32 => Channel) private _channels;
    uint256 private _openedCount;
    uint256 private _lock = 1;

    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed sender,
        address indexed recipient,
        address token,
        uint256 balance,
        uint256 expiration
    );
    event ChannelToppedUp(bytes32 indexed channelId, uint256 amount, uint256 balance);
    event ChannelClosed(bytes32 indexed channelId, uint256 claimAmount, uint256 nonce, uint256 refund);
    event ChannelExpired(bytes32 indexed channelId, uint256 refund);

    error ZeroAmount();
    error InvalidRecipient();
    error ExpirationNotInFuture();
    error WrongValue();
    error ChannelNotFound();
    error ChannelIsClosed();
    error ChannelHasExpired();
    error ChannelNotExpired();
    error NotRecipient();
    error NotSender();
    error InvalidNonce();
    error ClaimExceedsBalance();
    error InvalidSignature();
    error TransferFailed();
    error Reentrancy();

    modifier nonReentrant() {
        if (_lock != 1) revert Reentrancy();
        _lock = 2;
        _;
        _lock = 1;
    }

    /// @notice Open a channel to `recipient` holding `amount` of `token`
    /// (address(0): the native coin, sent as msg.value). The sender must have
    /// approved this contract for `amount` when `token` is an ERC-20.
    function openChannel(address token, address recipient, uint256 amount, uint256 expiration)
        external
        payable
        nonReentrant
        returns (bytes32 channelId)
    {
        if (amount == 0) revert ZeroAmount();
        if (recipient == address(0) || recipient == msg.sender) revert InvalidRecipient();
        if (expiration <= block.timestamp) revert ExpirationNotInFuture();
        if (msg.value != (token == address(0) ? amount : 0)) revert WrongValue();

        unchecked {
            _openedCount += 1;
        }
        channelId = keccak256(
            abi.encode(block.chainid, address(this), msg.sender, recipient, token, amount, expiration, _openedCount)
        );
        _channels[channelId] = Channel({
            sender: msg.sender,
            recipient: recipient,
            token: token,
            balance: amount,
            highestNonce: 0,
            expiration: expiration,
            isClosed: false
        });
        emit ChannelOpened(channelId, msg.sender, recipient, token, amount, expiration);

        if (token != address(0)) _pullToken(token, msg.sender, amount);
    }

    /// @notice Add `amount` to an open, unexpired channel (sender only).
    function topUpChannel(bytes32 channelId, uint256 amount) external payable nonReentrant {
        Channel storage channel = _openChannel(channelId);
        if (msg.sender != channel.sender) revert NotSender();
        if (block.timestamp >= channel.expiration) revert ChannelHasExpired();
        if (amount == 0) revert ZeroAmount();
        address token = channel.token;
        if (msg.value != (token == address(0) ? amount : 0)) revert WrongValue();

        uint256 newBalance = channel.balance + amount;
        channel.balance = newBalance;
        emit ChannelToppedUp(channelId, amount, newBalance);

        if (token != address(0)) _pullToken(token, msg.sender, amount);
    }

    /// @notice Close the channel with the sender's claim (recipient only, before
    /// expiration): pays `claimAmount` to the recipient and the rest to the sender.
    function closeChannel(bytes32 channelId, uint256 claimAmount, uint256 nonce, bytes calldata signature)
        external
        nonReentrant
    {
        Channel storage channel = _openChannel(channelId);
        if (msg.sender != channel.recipient) revert NotRecipient();
        if (block.timestamp >= channel.expiration) revert ChannelHasExpired();
        if (nonce <= channel.highestNonce) revert InvalidNonce();
        uint256 balance = channel.balance;
        if (claimAmount > balance) revert ClaimExceedsBalance();
        if (_claimSigner(channelId, claimAmount, nonce, signature) != channel.sender) revert InvalidSignature();

        uint256 refund = balance - claimAmount;
        channel.highestNonce = nonce;
        channel.balance = 0;
        channel.isClosed = true;
        emit ChannelClosed(channelId, claimAmount, nonce, refund);

        _pay(channel.token, channel.recipient, claimAmount);
        _pay(channel.token, channel.sender, refund);
    }

    /// @notice From `expiration` on, refund the whole balance to the sender (anyone may call).
    function expireChannel(bytes32 channelId) external nonReentrant {
        Channel storage channel = _openChannel(channelId);
        if (block.timestamp < channel.expiration) revert ChannelNotExpired();

        uint256 refund = channel.balance;
        channel.balance = 0;
        channel.isClosed = true;
        emit ChannelExpired(channelId, refund);

        _pay(channel.token, channel.sender, refund);
    }

    /// @notice The channel's state; all zeros for an unknown id. The balance is
    /// zero once the channel is closed or expired (it has been paid out).
    function getChannel(bytes32 channelId)
        external
        view
        returns (
            address sender,
            address recipient,
            address token,
            uint256 balance,
            uint256 highestNonce,
            uint256 expiration,
            bool isClosed
        )
    {
        Channel storage channel = _channels[channelId];
        return (
            channel.sender,
            channel.recipient,
            channel.token,
            channel.balance,
            channel.highestNonce,
            channel.expiration,
            channel.isClosed
        );
    }

    function _openChannel(bytes32 channelId) private view returns (Channel storage channel) {
        channel = _channels[channelId];
        if (channel.sender == address(0)) revert ChannelNotFound();
        if (channel.isClosed) revert ChannelIsClosed();
    }

    /// @dev The signer of a claim, or address(0) for a malformed or high-s signature.
    function _claimSigner(bytes32 channelId, uint256 claimAmount, uint256 nonce, bytes calldata signature)
        private
        pure
        returns (address)
    {
        if (signature.length != 65) return address(0);
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (v < 27) v += 27;
        if (v != 27 && v != 28) return address(0);
        if (uint256(s) > HALF_CURVE_ORDER) return address(0);
        bytes32 digest = keccak256(abi.encodePacked(channelId, claimAmount, nonce));
        bytes32 signed = keccak256(abi.encodePacked("\x19Ethereum Signed Message:\n32", digest));
        return ecrecover(signed, v, r, s);
    }

    function _pay(address token, address to, uint256 amount) private {
        if (amount == 0) return;
        bool ok;
        bytes memory data;
        if (token == address(0)) {
            (ok, ) = to.call{value: amount}("");
        } else {
            (ok, data) = token.call(abi.encodeCall(IERC20Minimal.transfer, (to, amount)));
            ok = ok && (data.length == 0 || abi.decode(data, (bool)));
        }
        if (!ok) revert TransferFailed();
    }

    function _pullToken(address token, address from, uint256 amount) private {
        if (token.code.length == 0) revert TransferFailed();
        (bool ok, bytes memory data) =
            token.call(abi.encodeCall(IERC20Minimal.transferFrom, (from, address(this), amount)));
        if (!ok || (data.length != 0 && !abi.decode(data, (bool)))) revert TransferFailed();
    }
}
