"""Text normalisation and the Aho-Corasick keyword rules for comment intent.

Rules give high-precision answers for the obvious comments (求资料, 多少钱, 退款);
the trainable model in ``intent_model`` handles everything the rules leave open.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import ahocorasick

Intent = Literal["material", "purchase", "question", "complaint", "other"]
INTENTS: Final[tuple[Intent, ...]] = ("material", "purchase", "question", "complaint", "other")
#: Each intent in the words operators use: a customer's profile intent, their intent tag and remark.
INTENT_WORDS: Final[dict[str, str]] = {
    "material": "求资料",
    "purchase": "想购买",
    "question": "咨询",
    "complaint": "投诉",
    "other": "其他",
}

# Traditional -> simplified for the characters that actually occur in comment intents
# (资料/价格/退款/质量...). A full OpenCC table is not a dependency; a wrong or
# missing character here only costs a rule match, the char n-gram model still sees it.
_T2S_PAIRS: Final[str] = (
    "資资電电關关發发錢钱價价買买賣卖貨货麼么這这個个們们來来說说對对還还沒没會会嗎吗"
    "號号單单為为請请謝谢給给開开幾几實实問问題题騙骗質质評评訴诉與与際际連连結结"
    "鏈链檔档載载課课讀读書书習习學学試试筆笔記记圖图網网盤盘頁页區区點点擊击購购"
    "車车優优專专櫃柜貴贵錯错壞坏難难聞闻氣气醫医藥药膚肤過过癢痒臉脸紅红顏颜碼码"
    "長长寬宽輕轻鬆松裡里裏里哪哪麵面雞鸡魚鱼湯汤鍋锅爐炉燈灯機机腦脑體体軟软邊边"
    "細细線线縮缩層层歲岁兒儿媽妈爺爷孫孙齊齐壯壮屬属產产業业務务員员團团將将應应"
    "當当從从時时間间後后嗎吗麽么聽听見见覺觉讓让認认識识變变經经濟济驗验險险號号"
    "碼码費费減减額额標标準准運运輸输寄寄郵邮遞递退退換换償偿虧亏潤润盜盗僞伪偽伪"
    "詐诈欺欺垃垃圾圾髒脏爛烂廢废惡恶亂乱煩烦氣气憤愤舉举報报維维權权訂订預预約约"
    "參参與与報报名名費费組组織织雙双條条種种類类樣样這这麼么樂乐愛爱戀恋歡欢讚赞"
    "謝谢親亲寶宝貝贝語语話话誰谁錄录響响聲声歌歌曲曲樂乐頻频視视劇剧藝艺術术畫画"
    "蘋苹華华為为係系統统設设計计裝装備备讀读寫写簡简歷历範范講讲義义紙纸筆笔數数"
    "錶表鐘钟飯饭餐餐館馆點点鹽盐醬酱蘿萝蔔卜蘭兰麗丽貓猫豬猪鳥鸟蟲虫葉叶園园樹树"
    "綫线網网絡络頭头髮发膠胶鞋鞋襪袜褲裤裙裙衛卫紗纱鐵铁銀银綠绿黃黄藍蓝顆颗歸归"
    "擁拥瀏浏覽览鏈链結结連连檔档傳传送送貼贴張张價价鉅巨總总計计贈赠獲获領领戶户"
    "饋馈現现貨货補补齊齐發发尋寻覓觅幫帮忙忙嗨嗨囉啰喔喔吶呐嘛嘛唄呗嗯嗯們们麼么"
    "謊谎壓压廣广告告紹绍介介刪删際际兌兑換换費费處处理理虛虚誇夸宣宣傳传態态辦办"
    "門门診诊聯联絡络師师證证據据準准確确選选擇择適适合合敏敏感感孕孕婦妇嬰婴幼幼"
)
_T2S_TABLE: Final[dict[int, int]] = {
    ord(_T2S_PAIRS[i]): ord(_T2S_PAIRS[i + 1])
    for i in range(0, len(_T2S_PAIRS), 2)
    if _T2S_PAIRS[i] != _T2S_PAIRS[i + 1]
}

_SPACE_RE: Final = re.compile(r"\s+")
# WeChat/Douyin bracket emoticons ([捂脸], [祈祷]) would otherwise leak CJK into rule text.
_BRACKET_EMOTICON_RE: Final = re.compile(r"\[[\u4e00-\u9fffa-z0-9]{1,5}\]")
# Rule text keeps only ideographs, ASCII letters/digits and '+' ("同求+1"): emoji,
# punctuation and spaces carry no keyword and break phrase matches ("求 资料").
_NON_RULE_RE: Final = re.compile(r"[^\u4e00-\u9fff\u3400-\u4dbfa-z0-9+]+")


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise TypeError(f"comment text must be str, got {type(text).__name__}")
    return text


def normalize(text: str) -> str:
    """Model text: NFKC (full-width to half-width), lower case, traditional to simplified, one space."""
    text = _check_text(text)
    text = unicodedata.normalize("NFKC", text).lower().translate(_T2S_TABLE)
    return _SPACE_RE.sub(" ", text).strip()


def rule_text(normalized: str) -> str:
    """Rule text from already-normalised text: emoticons, emoji, punctuation and spaces removed."""
    return _NON_RULE_RE.sub("", _BRACKET_EMOTICON_RE.sub("", normalized))


def rule_key(text: str) -> str:
    """Canonical key of a raw comment (normalised rule text, or model text when that is empty)."""
    norm = normalize(text)
    return rule_text(norm) or norm


RuleKind = Literal["keyword", "negation"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One keyword pattern: the intent it signals, its priority, and a label for reports."""

    pattern: str
    intent: Intent
    priority: int
    group: str  # "complaint", "purchase", "spam", "negation", ...

    @property
    def name(self) -> str:
        """Stable name shown as ``matched_rule``, e.g. ``purchase:多少钱``."""
        return f"{self.group}:{self.pattern}"


@dataclass(frozen=True, slots=True)
class NegationCue:
    """A cue like 不用/别 that cancels a keyword starting at most ``max_gap`` chars after it."""

    pattern: str
    max_gap: int


# Priority decides between non-overlapping hits in one comment. The labelling
# convention is the same: spam ads first (they stuff keywords on purpose), then
# complaint (must be handled before any sale), purchase (hottest lead), explicit
# "no thanks" phrases, material requests, and product questions last.
PRIORITY: Final[dict[str, int]] = {
    "spam": 60,
    "complaint": 50,
    "purchase": 40,
    "negation": 30,
    "material": 20,
    "question": 10,
}

_GROUP_INTENT: Final[dict[str, Intent]] = {
    "spam": "other",
    "complaint": "complaint",
    "purchase": "purchase",
    "negation": "other",
    "material": "material",
    "question": "question",
}

# Patterns are written in rule-text form: simplified, lower case, no spaces.
DEFAULT_PATTERNS: Final[dict[str, tuple[str, ...]]] = {
    "spam": (
        "加v",
        "加我v",
        "加微信",
        "加我微信",
        "加q",
        "q群",
        "vx",
        "薇信",
        "威信",
        "v信",
        "同号",
        "兼职",
        "日赚",
        "日结",
        "招代理",
        "招募代理",
        "诚招",
        "刷单",
        "网赚",
        "互关",
        "互粉",
        "互赞",
        "回关",
        "有关必回",
        "点我头像",
        "看我主页",
        "我主页",
        "主页有",
        "主页看",
        "来我直播间",
        "点击领取",
        "点击链接",
        "领红包",
        "扫码领",
        "私我看",
        "带你赚钱",
        "稳赚",
        "投资理财",
        "贷款找我",
        "办信用卡",
        "代写",
        "代考",
        "代刷",
        "涨粉",
        "买粉",
        "引流推广",
        "专业推广",
    ),
    "complaint": (
        "差评",
        "差苹",
        "骗人",
        "骗子",
        "骗纸",
        "骗zi",
        "pian子",
        "诈骗",
        "质量差",
        "质量太差",
        "质量很差",
        "质量真的很差",
        "品质差",
        "品质很差",
        "做工差",
        "做工很差",
        "做工太粗糙",
        "退款",
        "退宽",
        "退钱",
        "退货",
        "退费",
        "投诉",
        "投术",
        "举报",
        "维权",
        "12315",
        "消协",
        "假货",
        "卖假货",
        "不发货",
        "还没发货",
        "还不发货",
        "货不对板",
        "虚假宣传",
        "夸大宣传",
        "虚假广告",
        "割韭菜",
        "智商税",
        "避雷",
        "踩雷",
        "踩坑",
        "别买",
        "垃圾",
        "辣鸡",
        "垃鸡",
        "坑人",
        "坑钱",
        "坑爹",
        "太坑",
        "客服不回",
        "客服不理",
        "客服态度差",
        "客服态度太差",
        "售后太差",
        "服务太差",
        "不给退",
        "拉黑",
        "烂脸",
        "过敏",
        "爆痘",
        "是坏的",
        "就坏了",
        "发错",
        "少发",
        "骗关注",
        "骗粉",
        "骗流量",
        "骗钱",
        "无良",
        "黑心",
        "奸商",
        "浪费钱",
        "白花钱",
        "钱白花",
        "不值这个价",
        "没效果",
        "根本没用",
        "完全没用",
        "太失望",
        "很失望",
        "不满意",
        "体验极差",
        "差劲",
        "scam",
        "refund",
        "fake",
        "worst",
    ),
    "purchase": (
        "多少钱",
        "多钱",
        "多少米",
        "几块钱",
        "什么价",
        "啥价",
        "价格",
        "价位",
        "报价",
        "怎么卖",
        "咋卖",
        "怎么买",
        "咋买",
        "怎么购买",
        "如何购买",
        "哪里买",
        "哪买",
        "在哪买",
        "去哪买",
        "哪儿买",
        "哪里有卖",
        "哪里可以买",
        "哪里能买",
        "在哪能买",
        "求链接",
        "链接呢",
        "有链接吗",
        "上链接",
        "链接在哪",
        "购买链接",
        "下单链接",
        "同款链接",
        "求同款",
        "小黄车",
        "橱窗",
        "怎么下单",
        "怎么拍",
        "号链接",
        "下单",
        "已拍",
        "拍了",
        "付款了",
        "已付款",
        "能发货",
        "发货吗",
        "什么时候发货",
        "几天发货",
        "包邮",
        "有优惠",
        "优惠券",
        "有券",
        "便宜点",
        "打折吗",
        "有货吗",
        "有现货",
        "还有货",
        "补货",
        "想买",
        "想入手",
        "我要买",
        "求购",
        "预定",
        "预订",
        "怎么报名",
        "学费",
        "怎么加入",
        "怎么付款",
        "货到付款",
        "能分期",
        "开发票",
        "代购",
        "批发",
        "拿货",
        "团购",
        "拼单",
        "多少money",
        "howmuch",
        "price",
        "wheretobuy",
        "howtobuy",
        "linkpls",
        "求link",
        "求连结",
        "有连结吗",
    ),
    "negation": (
        "不用发",
        "不需要资料",
        "不需要了",
        "不要了",
        "资料收到",
        "收到资料",
        "已经有了",
        "我有了",
        "不用私信",
        "别私",
        "不要私信",
        "不要链接",
        "不需要链接",
        "不用给链接",
        "只看不买",
        "看看不买",
        "买不起",
        "价格不贵",
        "价格很良心",
        "良心价",
        "五星好评",
        "好评",
    ),
    "material": (
        "求资料",
        "求电子版",
        "求电子档",
        "电子版",
        "电子档",
        "求pdf",
        "pdf",
        "求发",
        "求私",
        "私信我",
        "私我",
        "私发",
        "同求",
        "蹲一个",
        "蹲资料",
        "蹲电子版",
        "链接资料",
        "资料链接",
        "网盘",
        "求分享",
        "求文件",
        "求文档",
        "求模板",
        "求模版",
        "求课件",
        "求笔记",
        "求题库",
        "求真题",
        "求原图",
        "求教程",
        "求完整版",
        "想要资料",
        "发我一份",
        "发一份",
        "求一份",
        "要一份",
        "领取",
        "怎么领",
        "还能领",
        "资料还有吗",
        "求zl",
        "姿料",
        "资科",
        "已私信",
        "求源码",
        "求素材",
        "求预设",
        "下载地址",
        "下载链接",
        "打印版",
        "求全套",
        "求合集",
        "求重发",
        "补发",
        "+1",
        "扣1",
        "资料",
        "求档案",
        "连结资料",
        "资料连结",
    ),
    "question": (
        "怎么用",
        "咋用",
        "如何使用",
        "怎么使用",
        "能用吗",
        "可以用吗",
        "能吃吗",
        "可以吃吗",
        "适合吗",
        "副作用",
        "保质期",
        "尺码",
        "什么码",
        "穿多大",
        "什么材质",
        "什么面料",
        "正品吗",
        "有效果吗",
        "有用吗",
        "效果怎么样",
        "多久见效",
        "什么软件",
        "什么app",
        "背景音乐",
        "bgm",
        "什么滤镜",
        "色号",
        "零基础",
        "回放",
        "几点直播",
        "什么时候直播",
        "什么时候更新",
        "需要基础",
        "区别",
        "哪个好",
        "哪款",
        "怎么操作",
        "没看懂",
        "怎么做",
        "怎么弄",
        "为什么",
        "请问",
        "求问",
        "想问",
        "问一下",
        "问下",
        "请教",
        "howtouse",
        "whatapp",
        "智商税吗",
        "是智商税",
        "会过敏吗",
        "过敏吗",
        "有没有效果",
        "支持退款吗",
        "能退款吗",
        "可以退款吗",
        "能退换吗",
        "退换货吗",
        "七天无理由",
        "靠谱吗",
        "好用吗",
        "值得买吗",
    ),
}

# "不是骗人的", "没有差评", "不想买", "别私信我": the cue cancels the keyword right after it.
DEFAULT_NEGATIONS: Final[tuple[NegationCue, ...]] = (
    NegationCue("不用", 3),
    NegationCue("不需要", 3),
    NegationCue("无需", 3),
    NegationCue("不要", 2),
    NegationCue("不想", 2),
    NegationCue("不是", 2),
    NegationCue("没有", 1),
    NegationCue("别", 1),
    NegationCue("没", 0),
    NegationCue("不", 0),
)


def build_rules(patterns: dict[str, Iterable[str]] | None = None) -> list[Rule]:
    """Turn ``{group: patterns}`` into rules; a pattern listed twice keeps its highest-priority group."""
    by_group = DEFAULT_PATTERNS if patterns is None else patterns
    chosen: dict[str, Rule] = {}
    for group, pats in by_group.items():
        if group not in PRIORITY:
            raise ValueError(f"unknown rule group {group!r}; expected one of {sorted(PRIORITY)}")
        for pat in pats:
            key = rule_text(normalize(pat))
            if not key:
                raise ValueError(f"rule pattern {pat!r} in group {group!r} is empty after normalisation")
            rule = Rule(key, _GROUP_INTENT[group], PRIORITY[group], group)
            if key not in chosen or chosen[key].priority < rule.priority:
                chosen[key] = rule
    return list(chosen.values())


@dataclass(frozen=True, slots=True)
class Hit:
    """A keyword occurrence in rule text: [start, end) and its rule."""

    start: int
    end: int
    rule: Rule


def resolve(hits: Sequence[Hit], negs: Sequence[tuple[int, int, int]]) -> Rule | None:
    """Pick the deciding rule: drop negated hits, keep longest non-overlapping, then highest priority.

    ``negs`` holds (start, end, max_gap) of negation cues. Shared by the Aho-Corasick
    matcher and the naive baseline in the benchmark so both give identical answers.
    """
    live = [h for h in hits if not any(n_end <= h.start and h.start - n_end <= gap for _, n_end, gap in negs)]
    if not live:
        return None
    # Longest first so "求链接资料" beats "求链接" and "扫码领" beats "领取".
    live.sort(key=lambda h: (h.start - h.end, h.start))
    taken: list[Hit] = []
    for h in live:
        if all(h.end <= t.start or h.start >= t.end for t in taken):
            taken.append(h)
    return max(taken, key=lambda h: (h.rule.priority, h.end - h.start)).rule


class RuleMatcher:
    """All keyword and negation patterns in one Aho-Corasick automaton."""

    def __init__(
        self,
        rules: Sequence[Rule] | None = None,
        negations: Sequence[NegationCue] = DEFAULT_NEGATIONS,
    ) -> None:
        self.rules: list[Rule] = list(build_rules() if rules is None else rules)
        self.negations: list[NegationCue] = list(negations)
        self._automaton = self._build()

    def _build(self) -> ahocorasick.Automaton:
        payload: dict[str, tuple[Rule | None, int]] = {r.pattern: (r, -1) for r in self.rules}
        for cue in self.negations:
            # A cue that is also a keyword (rare) keeps the keyword meaning.
            payload.setdefault(rule_text(normalize(cue.pattern)), (None, cue.max_gap))
        automaton = ahocorasick.Automaton()
        for pattern, (rule, gap) in payload.items():
            automaton.add_word(pattern, (len(pattern), rule, gap))
        automaton.make_automaton()
        return automaton

    def match(self, text: str) -> Rule | None:
        """Deciding rule for rule text (see :func:`rule_text`), or None when no keyword survives."""
        if not text:
            return None
        hits: list[Hit] = []
        negs: list[tuple[int, int, int]] = []
        for end_idx, (length, rule, gap) in self._automaton.iter(text):
            start = end_idx + 1 - length
            if rule is None:
                negs.append((start, end_idx + 1, gap))
            else:
                hits.append(Hit(start, end_idx + 1, rule))
        if not hits:
            return None
        return resolve(hits, negs)

    def __getstate__(self) -> dict[str, object]:
        # The automaton is rebuilt on load: cheap, and independent of pyahocorasick's pickle format.
        return {"rules": self.rules, "negations": self.negations}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.rules = state["rules"]  # type: ignore[assignment]
        self.negations = state["negations"]  # type: ignore[assignment]
        self._automaton = self._build()
